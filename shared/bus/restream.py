"""Rewriting a stream's messages in place, every sequence kept (`stagger privacy rewrite-streams`).

JetStream cannot edit a stored message, and an append-only stream cannot be made deletable
again, but a whole stream can be deleted and created anew starting at any sequence. So:

1. every message is copied, changed or not, into a temporary stream `REWRITE_<name>` with its
   sequence and stored time in headers, and the copy is counted;
2. the stream is deleted (its files go) and created again from its declaration, deletes allowed
   for now, starting at its old first sequence;
3. the messages are published back in order; a sequence that held nothing (a message deleted
   or expired) gets a placeholder that is then erased, so every message keeps its sequence and
   new messages continue after the old last one. Projections store positions as sequences;
4. the declared configuration (append-only again) and durable consumers are restored and the
   temporary stream deleted.

A run stopped after step 1 resumes from the copy (it is never deleted before the stream is
whole again). Headers JetStream checks only when a message is first published
(`Nats-Expected-*`) are not published again: they held then and mean nothing now.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import PubAck, RetentionPolicy, StorageType, StreamConfig
from nats.js.errors import NotFoundError

from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import CONSUMERS, StreamSpec, add_stream_when_ready
from shared.eventstore import replay_batches

log = logging.getLogger(__name__)

TEMP_PREFIX = "REWRITE_"
STORED_AT = "Stagger-Stored-At"
"""When the message was first stored (ISO 8601): the stream's own time is the rewrite's."""
_SEQUENCE = "Stagger-Rewrite-Sequence"
_DROPPED = ("Nats-Expected-",)
_CONCURRENT = 64
"""Messages sealed at once (each may fetch or create a recipient's key)."""
_CHUNK = 500
_COPY_WINDOW = 0.1
"""Seconds: the shortest duplicate window JetStream takes, while messages are published back
(an event id may legitimately be stored twice, further apart than the usual window)."""


@dataclass(frozen=True)
class Stored:
    """One stored message, however it was read."""

    subject: str
    sequence: int
    stored_ns: int
    headers: dict[str, str] | None
    data: bytes


Transform = Callable[[Stored], Awaitable[tuple[dict[str, str], bytes] | None]]
"""A message's new headers and data, or None to keep it as it is."""


class RewriteRefused(RuntimeError):
    """The stream cannot be rewritten now (something is using it); the message says what."""


@dataclass(frozen=True)
class Rewritten:
    """What rewriting one stream did."""

    stream: str
    messages: int
    changed: int
    first_seq: int
    last_seq: int


def ack_numbers(msg: Msg) -> tuple[int, int]:
    """(stream sequence, stored time in ns) from a JetStream delivery's reply subject."""
    tokens = msg.reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[7])
    return int(tokens[7]), int(tokens[9])


async def stored_messages(nc: Client, name: str) -> AsyncIterator[Stored]:
    """Every message of stream `name`, in order, without consuming any.

    A work queue (OUTBOX) is read message by message with the stream's get API: a reader
    (consumer) would overlap the gateway's durable, which a work queue refuses."""
    js = nc.jetstream()
    try:
        info = await js.stream_info(name)
    except NotFoundError:
        return
    state = info.state
    if not state.messages:
        return
    if info.config.retention == RetentionPolicy.WORK_QUEUE:
        sequence = state.first_seq
        while sequence <= state.last_seq:
            try:
                m = await js.get_msg(name, sequence, subject=">", next=True)
            except NotFoundError:
                return
            if m.seq is None or m.seq > state.last_seq:
                return
            stored = int(m.time.timestamp() * 1e9) if m.time else 0
            yield Stored(m.subject or "", m.seq, stored, m.headers, m.data or b"")
            sequence = m.seq + 1
        return
    async for batch in replay_batches(nc, name, until_sequence=state.last_seq):
        for msg in batch:
            sequence, stored = ack_numbers(msg)
            yield Stored(msg.subject, sequence, stored, msg.headers, msg.data or b"")


async def _chunks(messages: AsyncIterator[Stored]) -> AsyncIterator[list[Stored]]:
    chunk: list[Stored] = []
    async for msg in messages:
        chunk.append(msg)
        if len(chunk) >= _CHUNK:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _stored_at(nanos: int) -> str:
    return datetime.fromtimestamp(nanos / 1e9, UTC).isoformat()


async def busy_consumers(js: JetStreamContext, stream: str) -> list[str]:
    """Why `stream` is in use: consumers with clients waiting, messages not acknowledged, or
    live readers (ephemeral consumers). Empty when every service is stopped."""
    found: list[str] = []
    try:
        consumers = await js.consumers_info(stream)
    except NotFoundError:
        return found
    for c in consumers:
        cfg = c.config
        if not cfg.durable_name:
            found.append(f"{stream}: reader {c.name} is open (a service is running)")
        elif (c.num_waiting or 0) > 0 or c.push_bound:
            found.append(f"{stream}: consumer {c.name} has a client bound")
        elif (c.num_ack_pending or 0) > 0:
            found.append(f"{stream}: consumer {c.name} has {c.num_ack_pending} unacknowledged")
    return found


async def unrestorable_consumers(js: JetStreamContext, stream: str) -> list[str]:
    """Durable consumers a rewrite could not bring back where they were: undeclared ones, and
    declared ones on a stream that keeps acknowledged messages (their position would be lost)."""
    declared = {c.durable for c in CONSUMERS if c.stream == stream}
    info = await js.stream_info(stream)
    work_queue = info.config.retention == RetentionPolicy.WORK_QUEUE
    problems = []
    for c in await js.consumers_info(stream):
        name = c.config.durable_name
        if not name:
            continue
        if name not in declared:
            problems.append(f"{stream}: durable consumer {name} is not declared in topology")
        elif not work_queue and c.ack_floor is not None and c.ack_floor.stream_seq > 0:
            problems.append(f"{stream}: consumer {name} has acknowledged messages")
    return problems


async def _stream(js: JetStreamContext, name: str) -> StreamConfig | None:
    try:
        return (await js.stream_info(name)).config
    except NotFoundError:
        return None


async def rewrite_stream(
    nc: Client, spec: StreamSpec, transform: Transform, replicas: int = 1
) -> Rewritten:
    """Rewrite every message of `spec`'s stream through `transform`, sequences kept."""
    js = nc.jetstream()
    temp = TEMP_PREFIX + spec.name
    temp_config = await _stream(js, temp)
    if temp_config is not None and await _copy_complete(js, temp, temp_config):
        log.warning("resuming an interrupted rewrite from its copy", extra={"stream": spec.name})
        meta = temp_config.metadata or {}
        changed = int(meta.get("changed", "0"))
    else:
        if temp_config is not None:
            await js.delete_stream(temp)  # an unfinished copy: the stream itself is whole
        changed = await _copy_out(nc, spec.name, temp, transform)
        temp_config = await _stream(js, temp)
        assert temp_config is not None
    meta = temp_config.metadata or {}
    first, last, count = int(meta["first_seq"]), int(meta["last_seq"]), int(meta["messages"])
    durables = {c.config.durable_name for c in await _consumers(js, spec.name)}
    if await _stream(js, spec.name) is not None:
        await js.delete_stream(spec.name)
    await _copy_back(nc, spec, temp, first, last, count, replicas)
    # Only declared durables exist here (`unrestorable_consumers`), each as its service creates
    # it: a service starting later finds its consumer as it would have made it.
    for consumer in CONSUMERS:
        if consumer.stream == spec.name and consumer.durable in durables:
            await js.add_consumer(spec.name, config=consumer.config())
    await js.delete_stream(temp)
    return Rewritten(spec.name, count, changed, first, last)


def source_of(msg: Stored) -> tuple[str, int] | None:
    """(origin stream, its sequence) of a message a sourcing stream copied."""
    parts = (msg.headers or {}).get("Nats-Stream-Source", "").split(" ")
    if len(parts) < 2 or not parts[1].isdigit():
        return None
    return parts[0].split(":", 1)[0], int(parts[1])


async def resource_stream(
    nc: Client,
    spec: StreamSpec,
    replicas: int = 1,
    wait_seconds: float = 600.0,
    *,
    recreate: bool = True,
    create: Callable[[], Awaitable[None]] | None = None,
    extra: int = 0,
) -> int:
    """Delete a sourcing stream and create it again (unless `recreate` is False; with
    `create` doing the creating), then wait until it has copied every message its sources
    hold, plus `extra` (the services are stopped, so that number is fixed); returns it."""
    js = nc.jetstream()
    if recreate:
        if await _stream(js, spec.name) is not None:
            await js.delete_stream(spec.name)
        if create is not None:
            await create()
        else:
            await add_stream_when_ready(js, spec.config(replicas))
    expected = extra
    for source in spec.sources:
        expected += (await js.stream_info(source)).state.messages
    deadline = time.monotonic() + wait_seconds
    while (held := (await js.stream_info(spec.name)).state.messages) < expected:
        if time.monotonic() > deadline:
            raise RuntimeError(f"{spec.name} copied {held} of {expected} messages in time")
        await asyncio.sleep(0.2)
    return expected


async def _consumers(js: JetStreamContext, stream: str) -> list:  # type: ignore[type-arg]
    try:
        return list(await js.consumers_info(stream))
    except NotFoundError:
        return []


async def _copy_complete(js: JetStreamContext, temp: str, config: StreamConfig) -> bool:
    meta = config.metadata or {}
    if "messages" not in meta:
        return False
    info = await js.stream_info(temp)
    return info.state.messages == int(meta["messages"])


async def _copy_out(nc: Client, name: str, temp: str, transform: Transform) -> int:
    """Copy every message of `name` into `temp` (through `transform`); returns how many it
    changed. The copy's metadata records the stream's bounds once it is complete."""
    js = nc.jetstream()
    state = (await js.stream_info(name)).state
    prefix = f"_stagger.rewrite.{name}"
    await js.add_stream(
        StreamConfig(
            name=temp,
            description=f"Copy of {name} while `stagger privacy rewrite-streams` rewrites it.",
            subjects=[f"{prefix}.>"],
            storage=StorageType.FILE,
            duplicate_window=_COPY_WINDOW,
        )
    )
    changed = copied = 0
    limit = asyncio.Semaphore(_CONCURRENT)

    async def transformed(msg: Stored) -> tuple[dict[str, str], bytes] | None:
        async with limit:
            return await transform(msg)

    async for chunk in _chunks(stored_messages(nc, name)):
        # Many at a time: sealing fetches (or creates) each recipient's keys, one round trip
        # each; in turn, a stream of many recipients would take hours.
        news = await asyncio.gather(*(transformed(m) for m in chunk))
        outgoing = []
        for msg, new in zip(chunk, news, strict=True):
            changed += new is not None
            old_headers, body = (msg.headers or {}, msg.data) if new is None else new
            headers = {
                k: v
                for k, v in old_headers.items()
                if k != "Nats-Msg-Id" and not k.startswith(_DROPPED)
            }
            headers.setdefault(STORED_AT, _stored_at(msg.stored_ns))
            headers[_SEQUENCE] = str(msg.sequence)
            msg_id = (msg.headers or {}).get("Nats-Msg-Id")
            if msg_id is not None:
                headers[f"{_SEQUENCE}-Id"] = msg_id
            outgoing.append(Outgoing(f"{prefix}.{msg.subject}", body, headers))
        for result in await publisher_for(nc).publish_all(outgoing):
            if not isinstance(result, PubAck):
                raise RuntimeError(f"{name}: the copy was refused: {result}; nothing changed")
        copied += len(outgoing)
    if copied != state.messages:
        raise RuntimeError(f"{name}: copied {copied} messages of {state.messages}; nothing changed")
    bounds = {
        "first_seq": str(state.first_seq),
        "last_seq": str(state.last_seq),
        "messages": str(state.messages),
        "changed": str(changed),
    }
    info = await js.stream_info(temp)
    await js.update_stream(replace(info.config, metadata=bounds))
    return changed


def _gap_subject(spec: StreamSpec) -> str:
    """A subject of the stream no reader looks for (it only ever holds placeholders)."""
    return spec.subjects[0].replace(">", "_rewrite_gap").replace("*", "_rewrite_gap")


async def _copy_back(
    nc: Client, spec: StreamSpec, temp: str, first: int, last: int, count: int, replicas: int
) -> None:
    """Create the stream again at `first` and publish the copy back, sequences kept."""
    js = nc.jetstream()
    open_config = replace(
        spec.config(replicas),
        deny_delete=False,
        deny_purge=False,
        duplicate_window=_COPY_WINDOW,
        first_seq=first,
    )
    await add_stream_when_ready(js, open_config)
    gap_subject = _gap_subject(spec)
    placeholders: list[int] = []
    pending: list[Outgoing] = []
    recent: dict[str, float] = {}
    expected = first  # the sequence the next message published lands at

    async def flush() -> None:
        nonlocal expected
        results = await publisher_for(nc).publish_all(pending)
        for offset, ack in enumerate(results):
            if not isinstance(ack, PubAck) or ack.seq != expected + offset or ack.duplicate:
                raise RuntimeError(
                    f"{spec.name}: copied message {expected + offset} was stored as {ack}; "
                    f"the copy is kept in {temp}: run the command again"
                )
        expected += len(results)
        pending.clear()

    def add(subject: str, data: bytes, headers: dict[str, str] | None) -> int:
        pending.append(Outgoing(subject, data, headers))
        return expected + len(pending) - 1

    prefix_len = len(f"_stagger.rewrite.{spec.name}.")
    if count:
        async for batch in replay_batches(nc, temp):
            for msg in batch:
                headers = dict(msg.headers or {})
                sequence = int(headers.pop(_SEQUENCE))
                msg_id = headers.pop(f"{_SEQUENCE}-Id", None)
                while expected + len(pending) < sequence:
                    placeholders.append(add(gap_subject, b"", None))
                if msg_id is not None:
                    if msg_id in recent:
                        # The same id moments ago (stored twice, further apart than the
                        # usual window): let the short window pass first.
                        await flush()
                        await asyncio.sleep(_COPY_WINDOW * 2)
                    recent[msg_id] = time.monotonic()
                    headers["Nats-Msg-Id"] = msg_id
                add(msg.subject[prefix_len:], msg.data or b"", headers)
            await flush()
            horizon = time.monotonic() - _COPY_WINDOW * 2
            recent = {k: t for k, t in recent.items() if t > horizon}
    while expected + len(pending) <= last:
        placeholders.append(add(gap_subject, b"", None))
    await flush()
    for sequence in placeholders:
        await js.delete_msg(spec.name, sequence)  # erased, not just marked
    state = (await js.stream_info(spec.name)).state
    if state.messages != count or (count and state.first_seq != first) or state.last_seq < last:
        raise RuntimeError(
            f"{spec.name}: after the rewrite {state.messages} messages from {state.first_seq} "
            f"to {state.last_seq}, expected {count} from {first} to {last}; copy kept in {temp}"
        )
    await js.update_stream(spec.config(replicas))
