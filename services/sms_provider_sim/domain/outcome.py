"""The simulator's answer to one send, decided before any I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class SendOutcome:
    """How to answer one `POST /v1/messages`."""

    status_code: int
    body: dict[str, Any]
    headers: dict[str, str] = field(default_factory=dict)
    # Set for "timeout after accept": hold the request this long, then drop the connection.
    drop_after_seconds: float | None = None
