"""Dead-letter events: a message some consumer could not process, with the reason."""

from __future__ import annotations

from shared.events.envelope import EventData
from shared.events.registry import registry


@registry.register
class DeadLetterRecorded(EventData):
    """A consumer parked a message it could not process; the original is kept verbatim."""

    event_type = "stagger.deadletter.recorded"
    event_version = 1

    consumer: str
    reason: str
    subject: str
    body: str
    body_encoding: str
    headers: dict[str, str] = {}
    origin_stream: str | None = None
    origin_sequence: int | None = None
    deliveries: int | None = None
    truncated: bool = False
