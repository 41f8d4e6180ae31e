"""The SMS simulator dialect's webhook signatures: HMAC-SHA256 over "<timestamp>.<raw body>",
sent as `sha256=<hex>`.

Shared because two services speak it: the simulator signs its webhooks with it and the SMS
gateway verifies them (no service imports another). Each account signs with its own webhook
secret and names itself in `X-Sim-Account`. The timestamp is part of the signed text so that
a captured request cannot be replayed later with a fresh timestamp.
"""

from __future__ import annotations

import hashlib
import hmac
import time

TIMESTAMP_HEADER = "X-Sim-Timestamp"
SIGNATURE_HEADER = "X-Sim-Signature"
ACCOUNT_HEADER = "X-Sim-Account"
"""Names the account whose webhook secret signed the request: the receiver checks the
signature with that account's secret only."""
SCHEME = "sha256="

DEV_ACCOUNT = "sim-default"
DEV_WEBHOOK_SECRET = "sim-dev-webhook-secret"
"""The default account and its public development secret (`./dev up`): every other account
gets its own random secret unless one is given when it is created."""


def _as_bytes(value: str | bytes) -> bytes:
    return value.encode("utf-8") if isinstance(value, str) else value


def compute_signature(secret: str | bytes, timestamp: int | str, body: str | bytes) -> str:
    """The `X-Sim-Signature` header value for `body` sent at `timestamp` (unix seconds)."""
    message = f"{timestamp}.".encode("ascii") + _as_bytes(body)
    digest = hmac.new(_as_bytes(secret), message, hashlib.sha256).hexdigest()
    return SCHEME + digest


def signature_headers(secret: str | bytes, body: bytes, now: float | None = None) -> dict[str, str]:
    """Both signature headers for a webhook sent now."""
    timestamp = int(time.time() if now is None else now)
    return {
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: compute_signature(secret, timestamp, body),
    }


def verify_signature(
    secret: str | bytes,
    timestamp: str | int | None,
    body: str | bytes,
    header: str | None,
    tolerance_seconds: float = 300,
    now: float | None = None,
) -> bool:
    """True when `header` signs `body` at `timestamp` with `secret` and the timestamp is fresh.

    `timestamp` is the `X-Sim-Timestamp` header (unix seconds), `body` the raw request body
    exactly as received (not re-serialised JSON), `header` the `X-Sim-Signature` header.
    A timestamp more than `tolerance_seconds` away from `now` (either way) is rejected, so a
    replayed request fails. Missing or malformed values return False, never raise.
    """
    if timestamp is None or header is None:
        return False
    text = str(timestamp).strip()
    # Only plain decimal seconds: "+5" or " 5" parse as ints but would never be signed that way.
    if not text.isascii() or not text.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(text)) > tolerance_seconds:
        return False
    expected = compute_signature(secret, text, body)
    # Constant-time: timing must not reveal how many leading characters matched.
    return hmac.compare_digest(expected.encode("ascii"), header.strip().lower().encode("utf-8"))
