"""Refused webhooks: answered, counted by reason, and logged at a bounded rate.

Anyone who can reach the webhook port can make the gateway refuse requests, so each refusal
costs one counter increment and at most one log line per reason per `LOG_PERIOD_SECONDS`
(with the number of lines left out). Neither the body nor any secret is logged.
"""

from __future__ import annotations

import logging
import time
from typing import Literal

from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from shared.http_limits import too_large
from shared.log_rate import LogRateLimiter

log = logging.getLogger(__name__)

LOG_PERIOD_SECONDS = 60.0

Reason = Literal[
    "too_large",
    "no_account",
    "unknown_account",
    "no_secret",
    "untested_account",
    "bad_signature",
    "account_mismatch",
]

REFUSED = Counter(
    "stagger_webhooks_refused_total",
    "Provider webhooks refused before anything was stored: `too_large` (body over the cap), "
    "`no_account` (no account named), `unknown_account` (no site uses the account), "
    "`no_secret` (no site of the simulator account keeps its webhook secret), "
    "`untested_account` (Twilio: no site's provider test succeeded with its current token), "
    "`bad_signature` (no secret of the account signed it, or the timestamp is stale), "
    "`account_mismatch` (signed for one simulator account, naming another in its body).",
    ["reason"],
)

_limiter = LogRateLimiter(period=LOG_PERIOD_SECONDS)


def refuse(request: Request, reason: Reason, *, limit: int = 0) -> Response:
    """Count and (rate-limited) log one refusal; the answer to send."""
    REFUSED.labels(reason=reason).inc()
    suppressed = _limiter.admit(reason, time.monotonic())
    if suppressed is not None:
        log.warning(
            "webhook refused",
            extra={
                "reason": reason,
                "path": request.url.path,
                "client": request.client.host if request.client else None,
                "suppressed_since_last": suppressed,
            },
        )
    if reason == "too_large":
        return too_large(limit)
    return JSONResponse({"error": "invalid or missing signature"}, status_code=401)
