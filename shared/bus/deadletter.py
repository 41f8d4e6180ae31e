"""Dead letters: a message a consumer cannot process is parked with the reason, never dropped.

The dead letter keeps the original subject, headers and body (base64 when not UTF-8), where it
came from (stream, sequence, consumer) and why. Its id is derived from the origin, so a consumer
that dead-letters the same message twice (after a redelivery) stores it once.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
from dataclasses import dataclass, field
from typing import Protocol

from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import Counter

from shared.bus import subjects
from shared.bus.topology import DEADLETTER
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.deadletter import DeadLetterRecorded

log = logging.getLogger(__name__)

DEAD_LETTERS = Counter(
    "stagger_dead_letters_total", "Messages a consumer could not process", ["consumer"]
)

MAX_KEPT_BODY = 256 * 1024
_BASE64_SIZE = (MAX_KEPT_BODY + 2) // 3 * 4 + 2


@dataclass(frozen=True)
class DeadLetter:
    """A message that could not be processed, and why."""

    consumer: str
    reason: str
    subject: str
    body: str
    body_encoding: str
    headers: dict[str, str] = field(default_factory=dict)
    origin_stream: str | None = None
    origin_sequence: int | None = None
    deliveries: int | None = None
    truncated: bool = False

    @classmethod
    def from_msg(cls, msg: Msg, consumer: str, reason: str) -> DeadLetter:
        """Capture a received message."""
        origin_stream = origin_sequence = deliveries = None
        try:
            meta = msg.metadata
            origin_stream, origin_sequence = meta.stream, meta.sequence.stream
            deliveries = meta.num_delivered
        except Exception:  # core NATS message: no JetStream metadata
            pass
        return cls.from_parts(
            consumer=consumer,
            reason=reason,
            subject=msg.subject,
            data=msg.data or b"",
            headers=dict(msg.headers or {}),
            origin_stream=origin_stream,
            origin_sequence=origin_sequence,
            deliveries=deliveries,
        )

    @classmethod
    def from_parts(
        cls,
        *,
        consumer: str,
        reason: str,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None = None,
        origin_stream: str | None = None,
        origin_sequence: int | None = None,
        deliveries: int | None = None,
    ) -> DeadLetter:
        """Capture a message from its parts (HTTP webhooks, core NATS requests)."""
        truncated = len(data) > MAX_KEPT_BODY
        kept = data[:MAX_KEPT_BODY]
        try:
            body, encoding = kept.decode("utf-8"), "utf-8"
            # JSON escapes a control character in six bytes: text that grows past its base64
            # form is kept as base64, so the dead letter always fits NATS' payload limit.
            if len(json.dumps(body, ensure_ascii=False)) > _BASE64_SIZE:
                raise UnicodeDecodeError("utf-8", kept, 0, len(kept), "escapes too large")
        except UnicodeDecodeError:
            body, encoding = base64.b64encode(kept).decode("ascii"), "base64"
        return cls(
            consumer=consumer,
            reason=reason[:2000],
            subject=subject,
            body=body,
            body_encoding=encoding,
            headers={k: v for k, v in (headers or {}).items() if not _secret_header(k)},
            origin_stream=origin_stream,
            origin_sequence=origin_sequence,
            deliveries=deliveries,
            truncated=truncated,
        )

    @property
    def id(self) -> str:
        """Stable id: the same origin message dead-lettered twice is stored once."""
        if self.origin_stream and self.origin_sequence is not None:
            key = f"{self.origin_stream}:{self.origin_sequence}:{self.consumer}"
        else:
            key = f"{self.subject}:{self.consumer}:{self.body}"
        return "dl-" + hashlib.sha256(key.encode()).hexdigest()[:32]

    def to_event_data(self) -> DeadLetterRecorded:
        """The event recording this dead letter."""
        return DeadLetterRecorded(
            consumer=self.consumer,
            reason=self.reason,
            subject=self.subject,
            body=self.body,
            body_encoding=self.body_encoding,
            headers=self.headers,
            origin_stream=self.origin_stream,
            origin_sequence=self.origin_sequence,
            deliveries=self.deliveries,
            truncated=self.truncated,
        )


def _secret_header(name: str) -> bool:
    lowered = name.lower()
    return "authorization" in lowered or "signature" in lowered or "password" in lowered


async def publish_dead_letters(nc: Client, letters: list[DeadLetter]) -> None:
    """Store dead letters durably (awaiting each acknowledgement)."""
    js = nc.jetstream()
    for letter in letters:
        origin = letter.origin_stream or "core"
        event = make_event(
            letter.to_event_data(),
            source=f"consumer/{letter.consumer}",
            actor=f"service:{letter.consumer}",
            subject=letter.subject,
            event_id=letter.id,
        )
        headers, body = encode(event)
        await js.publish(
            subjects.dead_letter(origin, letter.consumer), body, headers=headers, stream=DEADLETTER
        )
        DEAD_LETTERS.labels(letter.consumer).inc()
        log.warning(
            "message dead-lettered",
            extra={"consumer": letter.consumer, "reason": letter.reason, "subject": letter.subject},
        )


class DeadLetterSink(Protocol):
    """Where messages that can never be handled go, each with its reason."""

    async def publish(self, letters: list[DeadLetter]) -> None: ...


class NatsDeadLetters:
    """The dead-letter stream over one NATS connection (a `DeadLetterSink`)."""

    def __init__(self, nc: Client) -> None:
        self._nc = nc

    async def publish(self, letters: list[DeadLetter]) -> None:
        """Store `letters` durably."""
        if letters:
            await publish_dead_letters(self._nc, letters)
