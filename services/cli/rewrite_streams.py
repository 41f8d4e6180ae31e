"""`stagger privacy rewrite-streams`: seal the events written in clear before personal data was
sealed, and start the audit trail over from the rewritten streams (docs/privacy.md).

Run with every service stopped. A survey first (the default, and the dry run): per stream, how
many events hold a personal field in clear. With `apply`: each such stream is rewritten in
place with its sequences kept (`shared/bus/restream.py`), the AUDIT stream is created again so
it copies the rewritten streams, a `stagger.privacy.streams_rewritten` event records the old
trail's chain heads, and the trail is emptied and rebuilt from the new AUDIT stream.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from nats.aio.client import Client
from nats.js.errors import APIError, NotFoundError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.audit.adapters.message_status import MessageStatusProjection
from services.audit.adapters.trail import AuditProjection
from services.audit.adapters.trail_reset import empty_trail, old_heads, record_hashes
from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.restream import (
    RewriteRefused,
    Stored,
    busy_consumers,
    resource_stream,
    rewrite_stream,
    source_of,
    stored_messages,
    unrestorable_consumers,
)
from shared.bus.topology import (
    AUDIT,
    CONTROL,
    DISPATCH,
    INBOUND,
    OPTOUTS,
    OUTBOX,
    STREAMS_BY_NAME,
)
from shared.db.projection import ProjectionRunner
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.privacy import ChainHead, StreamCount, StreamsRewritten
from shared.privacy.codec import PersonalData
from shared.privacy.reseal import Resealer, erased_recipients, holds_clear

ORIGINS = (OUTBOX, CONTROL, DISPATCH, INBOUND, OPTOUTS)
"""Streams whose events can carry personal fields (CONTROL's do not today: checked anyway)."""


@dataclass
class Survey:
    """What a rewrite would do, and what stands in its way."""

    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    """stream → (messages, messages with a personal field in clear)."""
    audit_messages: int = 0
    audit_clear: int = 0
    audit_orphans: int = 0
    """AUDIT copies of events their origin stream no longer holds (a rewrite drops them)."""
    problems: list[str] = field(default_factory=list)

    @property
    def to_rewrite(self) -> list[str]:
        """The origin streams with something to seal."""
        return [name for name, (_, clear) in self.counts.items() if clear]

    @property
    def nothing_to_do(self) -> bool:
        """True when no stream holds a personal field in clear."""
        return not self.to_rewrite and not self.audit_clear

    def as_json(self) -> dict[str, Any]:
        """The dry run's answer."""
        return {
            "streams": {
                name: {"messages": m, "to_seal": c} for name, (m, c) in self.counts.items()
            },
            "audit": {
                "messages": self.audit_messages,
                "to_seal": self.audit_clear,
                "would_drop": self.audit_orphans,
            },
            "nothing_to_do": self.nothing_to_do,
            "problems": self.problems,
        }


async def _scan(nc: Client, stream: str, each: Callable[[Stored], None]) -> int:
    """Call `each` on every message of `stream`; returns how many there were."""
    seen = 0
    async for msg in stored_messages(nc, stream):
        each(msg)
        seen += 1
    return seen


async def survey(nc: Client) -> Survey:
    """Count, per stream, the events still holding personal data in clear (changes nothing)."""
    js = nc.jetstream()
    found = Survey()
    for name in ORIGINS:
        clear = 0

        def count(msg: Stored) -> None:
            nonlocal clear
            clear += holds_clear(msg)

        found.counts[name] = (await _scan(nc, name, count), clear)
    firsts: dict[str, int] = {}
    for name in STREAMS_BY_NAME[AUDIT].sources:
        try:
            state = (await js.stream_info(name)).state
            firsts[name] = state.first_seq if state.messages else state.last_seq + 1
        except NotFoundError:
            firsts[name] = 2**63

    def audit(msg: Stored) -> None:
        found.audit_clear += holds_clear(msg)
        origin = source_of(msg)
        if origin is not None and origin[1] < firsts.get(origin[0], 2**63):
            found.audit_orphans += 1

    found.audit_messages = await _scan(nc, AUDIT, audit)
    if not found.nothing_to_do:
        for name in [*found.to_rewrite, AUDIT]:
            found.problems += await busy_consumers(js, name)
            if name != AUDIT:
                found.problems += await unrestorable_consumers(js, name)
        if found.audit_orphans:
            found.problems.append(
                f"{AUDIT}: {found.audit_orphans} events are no longer in their origin streams "
                "(past their max_age); creating AUDIT again would drop their copies"
            )
    return found


@dataclass(frozen=True)
class Trail:
    """The audit trail's database (the audit service's)."""

    engine: AsyncEngine
    db: async_sessionmaker[AsyncSession]


async def rewrite(
    nc: Client,
    personal: PersonalData,
    trail: Trail,
    *,
    actor: str,
    force: bool = False,
    mapping: Path | None = None,
    replicas: int = 1,
) -> dict[str, Any]:
    """Seal every clear personal field in the streams and rebuild the audit trail."""
    found = await survey(nc)
    if found.nothing_to_do:
        return found.as_json()
    if found.problems and not force:
        raise RewriteRefused("; ".join(found.problems))
    heads = await old_heads(trail.db)
    old: dict[str, tuple[int, str]] = {}
    if mapping is not None:
        old = {eid: (pos, digest) async for eid, pos, digest in record_hashes(trail.db)}
    resealer = Resealer(personal, await erased_recipients(nc))
    counts = []
    for name in ORIGINS:
        messages, clear = found.counts[name]
        if clear:
            done = await rewrite_stream(nc, STREAMS_BY_NAME[name], resealer, replicas)
            messages, clear = done.messages, done.changed
        counts.append(StreamCount(stream=name, messages=messages, sealed=clear))
    sourced = await resource_stream(nc, STREAMS_BY_NAME[AUDIT], replicas)
    event_id = await _record(nc, actor, counts, found, sourced, heads)
    await _audit_holds(nc, sourced + 1)
    await empty_trail(trail.engine)
    for projection in (AuditProjection(), MessageStatusProjection()):
        await ProjectionRunner(nc, trail.db, projection, batch_size=1000).catch_up()
    result = found.as_json()
    result.update(
        nothing_to_do=False,
        sealed={c.stream: c.sealed for c in counts},
        audit={**result["audit"], "messages_after": sourced + 1},
        event_id=event_id,
        old_chain_heads=heads,
    )
    if mapping is not None:
        result["mapping"] = await _write_mapping(trail.db, old, mapping)
    return result


async def _audit_holds(nc: Client, messages: int) -> None:
    """Wait until AUDIT has copied the rewrite's own record."""
    deadline = time.monotonic() + 60
    js = nc.jetstream()
    while (await js.stream_info(AUDIT)).state.messages < messages:
        if time.monotonic() > deadline:
            raise RuntimeError("the AUDIT stream did not copy the rewrite's record")
        await asyncio.sleep(0.1)


async def _record(
    nc: Client,
    actor: str,
    counts: list[StreamCount],
    found: Survey,
    sourced: int,
    heads: list[dict[str, Any]],
) -> str:
    """Publish `stagger.privacy.streams_rewritten`; returns its id."""
    data = StreamsRewritten(
        rewritten_by=actor,
        rewritten_at=datetime.now(UTC),
        streams=counts,
        audit_messages_before=found.audit_messages,
        audit_messages_after=sourced,
        audit_messages_dropped=found.audit_orphans,
        old_records=sum(int(h["records"]) for h in heads),
        old_chain_heads=[ChainHead.model_validate(h) for h in heads],
    )
    event = make_event(data, source="cli", actor=actor, subject="streams")
    headers, body = encode(event)
    [result] = await publisher_for(nc).publish_all(
        [Outgoing(subjects.streams_rewritten(), body, headers)]
    )
    if isinstance(result, APIError):
        raise RuntimeError(f"the rewrite's record was refused: {result.description}")
    return event.id


async def _write_mapping(
    db: async_sessionmaker[AsyncSession], old: dict[str, tuple[int, str]], path: Path
) -> dict[str, Any]:
    """Write `old hash → new hash` per event (JSON Lines) for the operator to keep."""
    written = 0
    with path.open("w", encoding="utf-8") as out:
        async for event_id, position, digest in record_hashes(db):
            before = old.get(event_id)
            line = {
                "event_id": event_id,
                "old_position": before[0] if before else None,
                "old_hash": before[1] if before else None,
                "new_position": position,
                "new_hash": digest,
            }
            out.write(json.dumps(line) + "\n")
            written += 1
    return {"path": str(path), "records": written}


__all__ = ["ORIGINS", "RewriteRefused", "Survey", "Trail", "rewrite", "survey"]
