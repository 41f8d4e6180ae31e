"""What Stagger says about a remote server's answer: a status and a short fixed reason.

A provider's error body or a mail server's reply text is the remote side's free text: it can
carry anything (internal host names, HTML, a hostile server's message aimed at staff). It is
never put in an event, an API answer or a hold reason; those carry the status (an HTTP status,
an SMTP reply code and enhanced status code) and a reason from the fixed vocabulary below,
plus a provider's own error *code* when it is a short token. The remote text itself reaches
only debug logs, cut short and stripped of control characters.
"""

from __future__ import annotations

import logging
import re

_TOKEN = re.compile(r"^[A-Za-z0-9_.-]{1,40}$")
_ENHANCED = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})\b")
_UNPRINTABLE = re.compile(r"[^\x20-\x7e]+")

HTTP_REASONS = {
    400: "the request was refused",
    401: "the credentials were refused",
    402: "payment required",
    403: "access refused",
    404: "not found",
    409: "conflict",
    413: "the request is too large",
    422: "the request was refused",
    429: "rate limited",
}


def http_reason(status: int) -> str:
    """A short fixed reason for an HTTP status."""
    if status in HTTP_REASONS:
        return HTTP_REASONS[status]
    if status >= 500:
        return "the provider had an error"
    if status >= 400:
        return "the request was refused"
    return "unexpected answer"


def code_token(value: object) -> str | None:
    """A provider's error code when it is a short token (`21211`, `invalid_number`), else
    None: a code is safe to show, a sentence is not."""
    if isinstance(value, bool) or value is None:
        return None
    text = str(value)
    return text if _TOKEN.match(text) else None


def http_detail(provider: str, status: int, code: object = None) -> str:
    """`<provider> answered HTTP 400 (the request was refused; code 21211)`."""
    token = code_token(code)
    extra = f"; code {token}" if token else ""
    return f"{provider} answered HTTP {status} ({http_reason(status)}{extra})"


def enhanced_status(text: str) -> str | None:
    """The RFC 3463 enhanced status code an SMTP reply text starts with (`5.7.30`)."""
    match = _ENHANCED.match(text or "")
    return match.group(1) if match else None


def smtp_status(code: int | None, text: str) -> str:
    """`550 5.7.30` (reply code and enhanced status code), never the server's words."""
    parts = [str(code)] if code is not None else []
    enhanced = enhanced_status(text)
    if enhanced:
        parts.append(enhanced)
    return " ".join(parts) or "no reply code"


def excerpt(text: object, limit: int = 200) -> str:
    """Remote text for a debug log: control characters squeezed out, cut at `limit`."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    cleaned = _UNPRINTABLE.sub(" ", str(text)).strip()
    return cleaned[:limit] + ("…" if len(cleaned) > limit else "")


def log_remote(log: logging.Logger, what: str, text: object, **extra: object) -> None:
    """Keep a short, cleaned excerpt of a remote answer at debug level only."""
    if log.isEnabledFor(logging.DEBUG):
        log.debug(what, extra={**extra, "remote_excerpt": excerpt(text)})
