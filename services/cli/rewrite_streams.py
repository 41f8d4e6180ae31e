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
import contextlib
import json
import uuid
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
from services.cli.rewrite_plan import Plan, forget_plan, load_plan, save_plan
from shared.bus import subjects
from shared.bus.orphans import ORPHANS, keep_orphans, orphan_count, source_orphans_first
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
                "expired_kept": self.audit_orphans,
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


async def expired_test(nc: Client) -> Callable[[Stored], bool]:
    """Whether an AUDIT message copies an event its own stream no longer holds."""
    js = nc.jetstream()
    firsts: dict[str, int] = {}
    for name in STREAMS_BY_NAME[AUDIT].sources:
        try:
            state = (await js.stream_info(name)).state
            firsts[name] = state.first_seq if state.messages else state.last_seq + 1
        except NotFoundError:
            firsts[name] = 2**63

    def expired(msg: Stored) -> bool:
        origin = source_of(msg)
        return origin is not None and origin[1] < firsts.get(origin[0], 2**63)

    return expired


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
    expired = await expired_test(nc)

    def audit(msg: Stored) -> None:
        found.audit_clear += holds_clear(msg)
        found.audit_orphans += expired(msg)

    found.audit_messages = await _scan(nc, AUDIT, audit)
    # Checked even with nothing left to seal: a rewrite stopped half-way resumes then.
    for name in [*found.to_rewrite, AUDIT]:
        found.problems += await busy_consumers(js, name)
        if name != AUDIT:
            found.problems += await unrestorable_consumers(js, name)
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
    """Seal every clear personal field in the streams and rebuild the audit trail (or finish
    a rewrite that was stopped half-way)."""
    js = nc.jetstream()
    plan = await load_plan(js)
    found = await survey(nc)
    if plan is None and found.nothing_to_do:
        return found.as_json()
    if found.problems and not force:
        raise RewriteRefused("; ".join(found.problems))
    old_file = None if mapping is None else mapping.with_name(mapping.name + ".old")
    if plan is None:
        heads = await old_heads(trail.db)
        if old_file is not None:
            await _save_old_hashes(trail.db, old_file)
        plan = Plan(
            event_id=str(uuid.uuid4()),
            actor=actor,
            counts=[
                {"stream": name, "messages": m, "sealed": c}
                for name, (m, c) in found.counts.items()
            ],
            audit_before=found.audit_messages,
            audit_expired=found.audit_orphans,
            heads=heads,
            old_records=sum(int(h["records"]) for h in heads),
        )
        await save_plan(js, plan)
    resealer = Resealer(personal, await erased_recipients(nc))
    if plan.audit_expired:
        # Before any origin changes, while AUDIT still holds them (again if a stopped run's
        # copy is incomplete, in which case AUDIT was not touched yet).
        expired = await expired_test(nc)
        await keep_orphans(nc, AUDIT, expired, resealer, plan.audit_expired)
    for name in found.to_rewrite:
        await rewrite_stream(nc, STREAMS_BY_NAME[name], resealer, replicas)
    spec = STREAMS_BY_NAME[AUDIT]

    async def create() -> None:
        await source_orphans_first(nc, spec, replicas)

    kept = await orphan_count(nc)
    sourced = await resource_stream(nc, spec, replicas, create=create if kept else None, extra=kept)
    await _record_once(nc, plan, sourced)
    held = await resource_stream(nc, spec, replicas, recreate=False, extra=kept)
    await empty_trail(trail.engine)
    for projection in (AuditProjection(), MessageStatusProjection()):
        await ProjectionRunner(nc, trail.db, projection, batch_size=1000).catch_up()
    result = found.as_json()
    result.update(
        nothing_to_do=False,
        sealed={c["stream"]: c["sealed"] for c in plan.counts},
        audit={**result["audit"], "messages_after": held},
        event_id=plan.event_id,
        old_chain_heads=plan.heads,
    )
    if mapping is not None and old_file is not None:
        result["mapping"] = await _write_mapping(trail.db, old_file, mapping)
    with contextlib.suppress(NotFoundError):
        await js.delete_stream(ORPHANS)
    await forget_plan(js)
    return result


async def _record_once(nc: Client, plan: Plan, sourced: int) -> None:
    """Publish `stagger.privacy.streams_rewritten` unless a stopped run already did."""
    subject = subjects.streams_rewritten()
    try:
        last = await nc.jetstream().get_msg(OPTOUTS, subject=subject)
        if (last.headers or {}).get("ce-id") == plan.event_id:
            return
    except NotFoundError:
        pass
    data = StreamsRewritten(
        rewritten_by=plan.actor,
        rewritten_at=datetime.now(UTC),
        streams=[StreamCount.model_validate(c) for c in plan.counts],
        audit_messages_before=plan.audit_before,
        audit_messages_after=sourced,
        audit_messages_expired=plan.audit_expired,
        old_records=plan.old_records,
        old_chain_heads=[ChainHead.model_validate(h) for h in plan.heads],
    )
    event = make_event(
        data, source="cli", actor=plan.actor, subject="streams", event_id=plan.event_id
    )
    headers, body = encode(event)
    [result] = await publisher_for(nc).publish_all([Outgoing(subject, body, headers)])
    if isinstance(result, APIError):
        raise RuntimeError(f"the rewrite's record was refused: {result.description}")


async def _save_old_hashes(db: async_sessionmaker[AsyncSession], path: Path) -> None:
    """The old trail's hashes, kept beside the mapping until the new ones are known."""
    with path.open("w", encoding="utf-8") as out:
        async for event_id, position, digest in record_hashes(db):
            out.write(json.dumps([event_id, position, digest]) + "\n")


async def _write_mapping(
    db: async_sessionmaker[AsyncSession], old_file: Path, path: Path
) -> dict[str, Any]:
    """Write `old hash → new hash` per event (JSON Lines) for the operator to keep."""
    old: dict[str, tuple[int, str]] = {}
    with old_file.open(encoding="utf-8") as lines:
        for text in lines:
            event_id, position, digest = json.loads(text)
            old[event_id] = (position, digest)
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
    await asyncio.to_thread(old_file.unlink)
    return {"path": str(path), "records": written}


__all__ = ["ORIGINS", "RewriteRefused", "Survey", "Trail", "rewrite", "survey"]
