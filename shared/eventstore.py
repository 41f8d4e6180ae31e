"""The JetStream event store: one subject per aggregate, optimistic concurrency per subject.

An aggregate's version is the stream sequence of its last event (0 when it has none). Appending
with `Nats-Expected-Last-Subject-Sequence` makes JetStream refuse a write based on a stale read
(error 10071), and `Nats-Msg-Id` = event id makes a retried append land once.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Sequence
from contextlib import aclosing
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import NoRespondersError
from nats.js import JetStreamContext
from nats.js.errors import APIError, NotFoundError

from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.reader import OrderedPullReader
from shared.events.codec import EXPECTED_LAST_SUBJECT_SEQ, EXPECTED_STREAM, decode, encode
from shared.events.envelope import Envelope
from shared.events.registry import EventRegistry, registry

WRONG_LAST_SEQUENCE = 10071


class ConcurrencyConflict(Exception):
    """Someone appended to the aggregate since the caller read it."""

    def __init__(self, subject: str, expected: int, actual: int | None) -> None:
        super().__init__(f"{subject}: expected version {expected}, the aggregate is at {actual}")
        self.subject = subject
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class AppendRequest:
    """One event to append; `expected_version` None means no concurrency check."""

    subject: str
    event: Envelope
    expected_version: int | None = None


@dataclass(frozen=True)
class AggregateHistory:
    """Every event of one aggregate, oldest first, and its current version."""

    subject: str
    events: tuple[Envelope, ...]
    version: int


class EventStore:
    """Append, load and replay events in one JetStream stream."""

    def __init__(
        self, nc: Client, stream: str, *, events: EventRegistry = registry, timeout: float = 5.0
    ) -> None:
        self._nc = nc
        self._js: JetStreamContext = nc.jetstream(timeout=timeout)
        self.stream = stream
        self._events = events

    @property
    def js(self) -> JetStreamContext:
        """The JetStream context this store uses (stream information, subjects)."""
        return self._js

    async def append(
        self, subject: str, event: Envelope, expected_version: int | None = None
    ) -> int:
        """Append one event; returns the aggregate's new version.

        Raises `ConcurrencyConflict` if `expected_version` is stale. Retrying an append whose
        acknowledgement was lost is safe: the same event id is recognised and not stored twice.
        """
        headers, body = encode(event)
        if expected_version is not None:
            headers[EXPECTED_LAST_SUBJECT_SEQ] = str(expected_version)
        try:
            ack = await self._js.publish(subject, body, headers=headers, stream=self.stream)
        except APIError as exc:
            if exc.err_code != WRONG_LAST_SEQUENCE:
                raise
            return await self._resolve_conflict(subject, event, expected_version or 0)
        return ack.seq

    async def append_many(
        self, requests: Sequence[AppendRequest]
    ) -> list[int | ConcurrencyConflict]:
        """Append many events pipelined (acks awaited together); one result per request.

        Requests for the same aggregate must not both carry an expected version unless the
        caller chains them, because both are checked against the version before either lands.
        """
        outgoing = []
        for request in requests:
            headers, body = encode(request.event)
            headers[EXPECTED_STREAM] = self.stream
            if request.expected_version is not None:
                headers[EXPECTED_LAST_SUBJECT_SEQ] = str(request.expected_version)
            outgoing.append(Outgoing(request.subject, body, headers))
        acks = await publisher_for(self._nc).publish_all(outgoing)
        results: list[int | ConcurrencyConflict] = []
        for request, ack in zip(requests, acks, strict=True):
            if not isinstance(ack, APIError):
                results.append(ack.seq)
            else:
                if ack.err_code != WRONG_LAST_SEQUENCE:
                    raise ack
                try:
                    results.append(
                        await self._resolve_conflict(
                            request.subject, request.event, request.expected_version or 0
                        )
                    )
                except ConcurrencyConflict as conflict:
                    results.append(conflict)
        return results

    async def _resolve_conflict(self, subject: str, event: Envelope, expected: int) -> int:
        # The server checks the expected sequence before de-duplication, so a retry of an
        # append that did land reports a conflict; it is ours if the last event is this one.
        last = await self.last(subject)
        if last is not None and last.id == event.id and last.sequence is not None:
            return last.sequence
        raise ConcurrencyConflict(subject, expected, last.sequence if last else 0)

    async def last(self, subject: str) -> Envelope | None:
        """The most recent event of an aggregate (direct get), or None."""
        try:
            raw = await self._js.get_last_msg(self.stream, subject, direct=True)
        except NotFoundError:
            return None
        return decode(
            raw.headers,
            raw.data or b"",
            stream=self.stream,
            sequence=raw.seq,
            nats_subject=raw.subject,
            events=self._events,
        )

    async def version(self, subject: str) -> int:
        """Current version of an aggregate: sequence of its last event, 0 if none."""
        last = await self.last(subject)
        return last.sequence if last and last.sequence else 0

    async def load(self, subject: str) -> AggregateHistory:
        """Every event of one aggregate in order (last-message lookup + ordered replay)."""
        last = await self.last(subject)
        if last is None or last.sequence is None:
            return AggregateHistory(subject, (), 0)
        events = [
            event
            async for event in self.replay(filter_subject=subject, until_sequence=last.sequence)
        ]
        return AggregateHistory(subject, tuple(events), last.sequence)

    async def replay(
        self,
        *,
        filter_subject: str | None = None,
        from_sequence: int = 1,
        until_sequence: int | None = None,
        lenient: bool = False,
    ) -> AsyncGenerator[Envelope, None]:
        """Every event from `from_sequence` up to what was last at the start (or `until`)."""
        batches = replay_batches(
            self._nc,
            self.stream,
            filter_subject=filter_subject,
            from_sequence=from_sequence,
            until_sequence=until_sequence,
        )
        async with aclosing(batches):
            async for batch in batches:
                for msg in batch:
                    yield decode(
                        msg.headers,
                        msg.data,
                        stream=self.stream,
                        sequence=stream_position(msg)[0],
                        nats_subject=msg.subject,
                        lenient=lenient,
                        events=self._events,
                    )


def stream_position(msg: Msg) -> tuple[int, int]:
    """(stream sequence, messages still pending) of a JetStream message, from its reply subject.

    Parsing the two numbers directly is several times cheaper than nats-py's metadata object,
    which replays build for every event. Handles both ack subject layouts
    (`$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>` and the 2.9+
    form with domain and account hash in front).
    """
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[8])
    return int(tokens[7]), int(tokens[10])


async def next_matching_sequence(
    js: JetStreamContext, stream: str, from_sequence: int, filter_subject: str | None
) -> int | None:
    """Sequence of the first message at or after `from_sequence` matching the filter, or None."""
    for direct in (True, False):
        try:
            found = await js.get_msg(
                stream,
                seq=max(1, from_sequence),
                subject=filter_subject or ">",
                next=True,
                direct=direct,
            )
            return found.seq
        except NotFoundError:
            return None
        except NoRespondersError:
            continue  # stream without allow_direct: ask the stream leader instead
    return None


async def replay_batches(
    nc: Client,
    stream: str,
    *,
    filter_subject: str | None = None,
    from_sequence: int = 1,
    until_sequence: int | None = None,
    follow: bool = False,
    max_batch: int = 500,
    last_per_subject: bool = False,
) -> AsyncGenerator[list[Msg], None]:
    """Messages of a stream in order, in batches of what has already arrived.

    Reads through `OrderedPullReader` (pull with back-pressure: nothing is dropped however slow
    the caller is). Without `follow`, stops at the last message that existed when the replay
    started (or at `until_sequence`); with `follow`, keeps yielding new messages until the
    caller stops iterating. `last_per_subject` starts with only the latest message of each
    subject (a snapshot of every aggregate) and then follows.
    """
    js = nc.jetstream()
    if not follow:
        if until_sequence is None:
            until_sequence = (await js.stream_info(stream)).state.last_seq
        if until_sequence < from_sequence:
            return
        # A filter may match nothing in range: then no message would ever arrive.
        first = await next_matching_sequence(js, stream, from_sequence, filter_subject)
        if first is None or first > until_sequence:
            return
    reader = OrderedPullReader(
        nc,
        stream,
        filter_subject=filter_subject,
        from_sequence=from_sequence,
        deliver_last_per_subject=last_per_subject,
        batch=max_batch,
    )
    batches = reader.batches(follow=follow, until_sequence=until_sequence)
    async with aclosing(batches):
        async for batch in batches:
            yield batch
