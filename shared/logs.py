"""Structured logging: JSON lines when not on a terminal, readable lines when on one.

Secrets are scrubbed twice: values known to be secret (registered when they are decrypted) are
replaced in every record, and fields whose names look secret are masked in `extra` data.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

REDACTED = "***"
_SECRET_FIELD_HINTS = ("password", "secret", "token", "auth", "credential", "api_key", "apikey")
_STANDARD_ATTRS = set(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_known_secrets: set[str] = set()
_known_secrets_lock = threading.Lock()


def register_secret(value: str) -> None:
    """Remember a plaintext secret so that no log line can ever contain it."""
    if len(value) >= 4:
        with _known_secrets_lock:
            _known_secrets.add(value)


def scrub(text: str) -> str:
    """Replace every registered secret in `text`."""
    if not _known_secrets:
        return text
    for secret in tuple(_known_secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _mask_fields(value: Any, key: str = "") -> Any:
    if any(hint in key.lower() for hint in _SECRET_FIELD_HINTS):
        return REDACTED if value not in (None, "") else value
    if isinstance(value, dict):
        return {k: _mask_fields(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask_fields(v) for v in value]
    return value


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: _mask_fields(v, k) for k, v in record.__dict__.items() if k not in _STANDARD_ATTRS}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, service fields, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        payload.update(_extras(record))
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        return scrub(json.dumps(payload, default=str))


class ConsoleFormatter(logging.Formatter):
    """Readable single lines for a developer's terminal."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        extras = _extras(record)
        tail = " ".join(f"{k}={v}" for k, v in extras.items())
        line = f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        if tail:
            line = f"{line}  {tail}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return scrub(line)


def configure_logging(service: str, level: str = "INFO", fmt: str = "auto") -> None:
    """Install the Stagger formatter on the root logger (idempotent)."""
    use_json = fmt == "json" or (fmt == "auto" and not sys.stderr.isatty())
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service) if use_json else ConsoleFormatter(service))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
    # Third-party chatter that would drown the event flow at INFO.
    for noisy in ("uvicorn.access", "aiosqlite", "nats", "faststream.access", "httpx"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


class RoutineFetchTimeouts(logging.Filter):
    """Drops FastStream's task-supervisor chatter about an empty pull fetch.

    nats-py raises asyncio's TimeoutError where FastStream's pull loop expects its own, so an
    idle stream ends the loop; FastStream restarts it and logs an ERROR with a traceback (and
    an INFO line per callback). Nothing is wrong, so neither line is shown; any other failure
    of the loop still is.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("callback for ") and message.endswith("is being executed..."):
            return False
        error = record.exc_info[1] if record.exc_info else None
        return not ("raised an exception" in message and isinstance(error, TimeoutError))
