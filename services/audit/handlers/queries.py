"""Questions auditors and the console ask of the trail."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit.adapters.trail import chain_heads, messages, records
from services.audit.domain.chain import GENESIS, digest
from shared.secrets import PREFIX as SEALED_PREFIX
from shared.secrets import REDACTED

# A sealed value anywhere in a text (Fernet tokens are url-safe base64).
_SEALED = re.compile(re.escape(SEALED_PREFIX) + r"[A-Za-z0-9_\-=]*")
# Keys whose values are kept in the trail but never shown: what they hash is a credential.
_HIDDEN_KEYS = frozenset({"secret_hash"})


@dataclass(frozen=True)
class EventFilter:
    """Which records to list; every field optional. `groups` limits to what a caller may see;
    `sites`, when set, limits to records of those sites (group-level records, without a site,
    are left out: they are for group roles)."""

    groups: Sequence[str] | None = None
    sites: Sequence[str] | None = None
    site_id: str | None = None
    group_id: str | None = None
    type: str | None = None
    message_id: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    after_position: int = 0

    def clauses(self) -> list[sa.ColumnElement[bool]]:
        """SQL conditions."""
        r = records.c
        out: list[sa.ColumnElement[bool]] = [r.position > self.after_position]
        if self.groups is not None:
            out.append(r.group_id.in_(list(self.groups)))
        if self.sites is not None:
            out.append(r.site_id.in_(list(self.sites)))
        if self.site_id:
            out.append(r.site_id == self.site_id)
        if self.group_id:
            out.append(r.group_id == self.group_id)
        if self.type:
            out.append(
                r.type.like(f"{self.type}%") if self.type.endswith(".") else r.type == self.type
            )
        if self.message_id:
            out.append(r.message_id == self.message_id)
        if self.actor:
            out.append(r.actor == self.actor)
        if self.since:
            out.append(r.at >= self.since)
        if self.until:
            out.append(r.at < self.until)
        return out


def redact(node: Any) -> Any:
    """Data as shown: sealed values (`enc:v1:…`) and token hashes replaced by a mask.

    Only on the way out: the trail keeps (and hashes) what was written, so `verify` still
    checks every record; a reader cannot recompute a hash from a redacted copy.
    """
    if isinstance(node, dict):
        return {
            k: (REDACTED if k in _HIDDEN_KEYS and v is not None else redact(v))
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [redact(v) for v in node]
    if isinstance(node, str) and SEALED_PREFIX in node:
        return _SEALED.sub(REDACTED, node)
    return node


def record_json(row: Any) -> dict[str, Any]:
    """A record as a JSON object (CloudEvent attributes, data redacted, place in the chain)."""
    try:
        data: Any = json.loads(row.data)
    except ValueError:
        data = row.data
    data = redact(data)
    return {
        "position": row.position,
        "id": row.event_id,
        "type": f"{row.type}.v{row.version}",
        "source": row.source,
        "subject": row.subject,
        "time": row.time,
        "actor": row.actor,
        "groupid": row.group_id,
        "siteid": row.site_id,
        "message_id": row.message_id,
        "correlationid": row.correlation_id,
        "origin": {
            "stream": row.origin_stream,
            "sequence": row.origin_sequence,
            "subject": row.nats_subject,
        },
        "data": data,
        "hash": row.hash,
        "prev_hash": row.prev_hash,
    }


async def list_events(
    session: AsyncSession, flt: EventFilter, limit: int = 100
) -> tuple[list[dict[str, Any]], int | None]:
    """A page of records in stream order, and the cursor of the next page (None at the end)."""
    rows = (
        await session.execute(
            sa.select(records).where(*flt.clauses()).order_by(records.c.position).limit(limit + 1)
        )
    ).all()
    more = len(rows) > limit
    rows = rows[:limit]
    return [record_json(r) for r in rows], (rows[-1].position if more and rows else None)


async def iter_events(
    db: async_sessionmaker[AsyncSession], flt: EventFilter, page: int = 2000
) -> AsyncIterator[dict[str, Any]]:
    """Every matching record, page by page (exports)."""
    cursor = flt.after_position
    while True:
        async with db() as session:
            batch, nxt = await list_events(
                session,
                EventFilter(**{**flt.__dict__, "after_position": cursor}),
                page,
            )
        for item in batch:
            yield item
        if nxt is None:
            return
        cursor = nxt


CSV_COLUMNS = (
    "position",
    "id",
    "type",
    "time",
    "actor",
    "groupid",
    "siteid",
    "message_id",
    "subject",
    "hash",
    "data",
)


def csv_line(item: dict[str, Any] | None) -> str:
    """One CSV line of an exported record (the header line for None)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    if item is None:
        writer.writerow(CSV_COLUMNS)
    else:
        writer.writerow(
            [
                json.dumps(item[c], separators=(",", ":")) if c == "data" else item.get(c)
                for c in CSV_COLUMNS
            ]
        )
    return buffer.getvalue()


async def timeline(
    session: AsyncSession, message_id: str, scope: EventFilter | None = None
) -> dict[str, Any] | None:
    """Everything about one message, and why it went when it did.

    Joins the message's own events, the tick that released it (carried in `sent`), and the
    site's settings in force when it was sent (the last settings event before it). `scope`
    (its groups and sites) limits every query to what the caller may see, in SQL: another
    group's records under the same message id are never read.
    """
    scope = scope or EventFilter()
    rows = (
        await session.execute(
            sa.select(records)
            .where(records.c.message_id == message_id, *scope.clauses())
            .order_by(records.c.position)
        )
    ).all()
    if not rows:
        return None
    events = [record_json(r) for r in rows]
    m = messages.c
    state_query = sa.select(messages).where(m.message_id == message_id)
    if scope.groups is not None:
        state_query = state_query.where(m.group_id.in_(list(scope.groups)))
    if scope.sites is not None:
        state_query = state_query.where(m.site_id.in_(list(scope.sites)))
    state = (await session.execute(state_query)).first()
    sent = next((e for e in events if e["type"].startswith("stagger.dispatch.sent")), None)
    settings_event = None
    site_id = rows[0].site_id
    # By event time, not by place in the trail: AUDIT gathers several streams through
    # JetStream sources, which interleave them in no guaranteed order, so a settings change
    # made before the send may be recorded after it.
    anchor = (
        next((r for r in rows if r.position == sent["position"]), rows[-1]) if sent else rows[-1]
    )
    if site_id:
        found = (
            await session.execute(
                sa.select(records)
                .where(
                    records.c.site_id == site_id,
                    records.c.group_id == rows[0].group_id,
                    records.c.type.in_(["stagger.site.settings_changed", "stagger.site.created"]),
                    records.c.at <= anchor.at,
                )
                # Settings events all come from one stream, so among themselves the trail
                # keeps their order: the newest by position is the newest in time.
                .order_by(records.c.position.desc())
                .limit(1)
            )
        ).first()
        settings_event = record_json(found) if found else None
    why = None
    if sent:
        release = sent["data"].get("released_by") or {}
        why = {
            "sent_at": sent["data"].get("sent_at"),
            "released_by_tick": release.get("tick_id"),
            "tick_scheduled_at": release.get("scheduled_at"),
            "reason": release.get("reason"),
            "manual": release.get("manual"),
            "provider_message_id": sent["data"].get("provider_message_id"),
            "reconciled": sent["data"].get("reconciled"),
        }
    held = [
        {"at": e["time"], "reason": e["data"].get("reason"), "retry_at": e["data"].get("retry_at")}
        for e in events
        if e["type"].startswith("stagger.dispatch.deferred")
    ]
    return {
        "message_id": message_id,
        "state": dict(state._mapping) if state else None,
        "events": events,
        "why_sent_then": why,
        "held": held,
        "settings_in_force": {
            "version_position": settings_event["position"],
            "changed_by": settings_event["actor"],
            "at": settings_event["time"],
            "settings": settings_event["data"].get("settings"),
        }
        if settings_event
        else None,
    }


async def outbox(
    session: AsyncSession,
    site_id: str,
    *,
    group_id: str | None = None,
    state: str | None = None,
    channel: str | None = None,
    limit: int = 100,
    offset: int = 0,
) -> dict[str, Any]:
    """A site's messages by state, with counts (the console's outbox); `group_id` keeps
    another group's rows out in SQL."""
    m = messages.c
    base = [m.site_id == site_id]
    if group_id is not None:
        base.append(m.group_id == group_id)
    if channel:
        base.append(m.channel == channel)
    counts = {
        r[0]: r[1]
        for r in await session.execute(
            sa.select(m.state, sa.func.count()).where(*base).group_by(m.state)
        )
    }
    query = sa.select(messages).where(*base)
    if state:
        query = query.where(m.state == state)
    rows = (
        await session.execute(query.order_by(m.last_position.desc()).limit(limit).offset(offset))
    ).all()
    return {"site_id": site_id, "counts": counts, "messages": [dict(r._mapping) for r in rows]}


@dataclass
class VerifyResult:
    """The outcome of checking every chain."""

    ok: bool
    records: int = 0
    chains: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)


async def verify(
    db: async_sessionmaker[AsyncSession], page: int = 5000, *, group_id: str | None = None
) -> VerifyResult:
    """Recompute every record's hash and its link to the one before; name each broken row.

    With `group_id`, only that group's chain is read and reported on (a group's callers learn
    nothing about any other group's records); without, every chain (the operator's check).
    """
    result = VerifyResult(ok=True)
    head_query = sa.select(chain_heads)
    scope: list[sa.ColumnElement[bool]] = []
    if group_id is not None:
        head_query = head_query.where(chain_heads.c.chain == group_id)
        # A group's chain is exactly its records (`chain` is the group id); the group column
        # is the indexed one.
        scope = [records.c.group_id == group_id, records.c.chain == group_id]
    async with db() as session:
        heads = {h.chain: h for h in await session.execute(head_query)}
    last: dict[str, tuple[str, int, int]] = {}
    cursor = 0
    while True:
        async with db() as session:
            rows = (
                await session.execute(
                    sa.select(records)
                    .where(records.c.position > cursor, *scope)
                    .order_by(records.c.position)
                    .limit(page)
                )
            ).all()
        if not rows:
            break
        for row in rows:
            values = dict(row._mapping)
            prev, _, count = last.get(row.chain, (GENESIS, 0, 0))
            if row.prev_hash != prev:
                result.problems.append(
                    {
                        "position": row.position,
                        "event_id": row.event_id,
                        "chain": row.chain,
                        "problem": "does not follow the chain's previous record (a record before "
                        "it was deleted or altered)",
                    }
                )
            if digest(row.prev_hash, values) != row.hash:
                result.problems.append(
                    {
                        "position": row.position,
                        "event_id": row.event_id,
                        "chain": row.chain,
                        "problem": "its contents do not match its hash (the row was altered)",
                    }
                )
            last[row.chain] = (row.hash, row.position, count + 1)
            result.records += 1
        cursor = rows[-1].position
    for chain, head in heads.items():
        tail = last.get(chain)
        if tail is None or tail[0] != head.hash or tail[2] != head.records:
            result.problems.append(
                {
                    "position": head.position,
                    "event_id": None,
                    "chain": chain,
                    "problem": "the chain ends before its recorded head (records were deleted)",
                }
            )
    for chain in set(last) - set(heads):
        result.problems.append(
            {
                "position": last[chain][1],
                "event_id": None,
                "chain": chain,
                "problem": "a chain has no recorded head",
            }
        )
    result.chains = len(last)
    result.ok = not result.problems
    return result
