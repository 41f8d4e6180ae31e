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
from starlette.types import Scope

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
    "bad_token",
    "source_not_allowed",
]

REFUSED = Counter(
    "stagger_webhooks_refused_total",
    "Provider webhooks refused before anything was stored: `too_large` (body over the cap), "
    "`no_account` (no account named), `unknown_account` (no site uses the account), "
    "`no_secret` (no site of the simulator account keeps its webhook secret), "
    "`untested_account` (Twilio: no site's provider test succeeded with its current token), "
    "`bad_signature` (no secret of the account signed it, or the timestamp is stale), "
    "`account_mismatch` (signed for one simulator account, naming another in its body), "
    "`bad_token` (unsigned providers: the path's token is no tested site's webhook secret), "
    "`source_not_allowed` (unsigned providers: the caller is outside the account's allow-list).",
    ["reason"],
)

_limiter = LogRateLimiter(period=LOG_PERIOD_SECONDS)


def count(reason: Reason, path: str, client: str | None) -> None:
    """Count and (rate-limited) log one refusal."""
    REFUSED.labels(reason=reason).inc()
    suppressed = _limiter.admit(reason, time.monotonic())
    if suppressed is not None:
        log.warning(
            "webhook refused",
            extra={
                "reason": reason,
                "path": path,
                "client": client,
                "suppressed_since_last": suppressed,
            },
        )


def refuse(request: Request, reason: Reason) -> Response:
    """Count one refused signature check; the 401 to send."""
    count(reason, request.url.path, request.client.host if request.client else None)
    return JSONResponse({"error": "invalid or missing signature"}, status_code=401)


def count_too_large(scope: Scope) -> None:
    """`BodyLimit`'s report of a body over the webhook cap (it sends the 413 itself)."""
    client = scope.get("client")
    count("too_large", str(scope.get("path", "")), client[0] if client else None)
