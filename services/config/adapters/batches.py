"""The batch read model: which batch each message is in and the state it has reached.

A submission records its batch and every message as `accepted`; DISPATCH then moves each
message to `queued` (the gateway stored it) and to its one terminal state. Counts per batch are
exact (a GROUP BY over the batch's rows), not a guess over recent messages.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters.batch_tables import batch_messages, batches
from services.config.adapters.sent_counts import count_sent
from shared.bus.topology import DISPATCH
from shared.db.sql import insert_ignoring_duplicates, insert_many_ignoring_duplicates
from shared.domain.batches import BatchProgress, progress
from shared.events.envelope import Envelope
from shared.events.schemas.dispatch import (
    MessageCancelled,
    MessageExpired,
    MessageFailed,
    MessageQueued,
    MessageSent,
    MessageSuppressed,
)

TERMINAL_STATES: dict[type, str] = {
    MessageSent: "sent",
    MessageFailed: "failed",
    MessageSuppressed: "suppressed",
    MessageCancelled: "cancelled",
    MessageExpired: "expired",
}
WAITING = ("accepted", "queued")


@dataclass(frozen=True)
class Batch:
    """A batch's identity and its progress."""

    batch_id: str
    group_id: str
    site_id: str
    channel: str
    submitted_at: datetime
    submitted_by: str | None
    progress: BatchProgress

    def as_json(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "batch_id": self.batch_id,
            "site_id": self.site_id,
            "channel": self.channel,
            "submitted_at": self.submitted_at.isoformat(),
            "submitted_by": self.submitted_by,
            **self.progress.as_json(),
        }


class BatchProjection:
    """Keeps `config_batch_messages` in step with DISPATCH."""

    name = "config.batches"
    stream = DISPATCH
    filter_subject: str | None = None

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        """Queued messages join their batch; terminal events set their state."""
        now = datetime.now(UTC)
        queued: dict[tuple[str, str], MessageQueued] = {}
        ended: dict[tuple[str, str], str] = {}
        hours: Counter[tuple[str, str, datetime]] = Counter()
        for event in events:
            data = event.data
            if isinstance(data, MessageSent):
                at = data.sent_at.astimezone(UTC) if data.sent_at.tzinfo else data.sent_at
                hour = at.replace(minute=0, second=0, microsecond=0, tzinfo=UTC)
                hours[(data.site_id, data.channel, hour)] += 1
            if isinstance(data, MessageQueued) and data.batch_id:
                queued[(data.site_id, data.message_id)] = data
            else:
                state = TERMINAL_STATES.get(type(data))
                if state is not None:
                    ended[(data.site_id, data.message_id)] = state  # type: ignore[attr-defined]
        if queued:
            # A batch only seen on the bus (published straight to the outbox): total unknown.
            first = {d.batch_id: d for d in queued.values()}
            await session.execute(
                insert_ignoring_duplicates(
                    session,
                    batches,
                    [
                        {
                            "batch_id": d.batch_id,
                            "group_id": d.group_id,
                            "site_id": d.site_id,
                            "channel": d.channel,
                            "total": None,
                            "submitted_at": d.submitted_at or now,
                            "submitted_by": None,
                        }
                        for d in first.values()
                    ],
                )
            )
            rows = [
                {
                    "site_id": s,
                    "message_id": m,
                    "batch_id": d.batch_id,
                    "state": "queued",
                    "updated_at": now,
                }
                for (s, m), d in queued.items()
            ]
            await session.execute(insert_many_ignoring_duplicates(session, batch_messages), rows)
            await session.execute(
                sa.update(batch_messages)
                .where(
                    batch_messages.c.site_id == sa.bindparam("k_site"),
                    batch_messages.c.message_id == sa.bindparam("k_message"),
                    batch_messages.c.state == "accepted",
                )
                .values(state="queued", updated_at=now),
                [{"k_site": s, "k_message": m} for s, m in queued],
            )
        if hours:
            await count_sent(session, hours)
        if ended:
            await session.execute(
                sa.update(batch_messages)
                .where(
                    batch_messages.c.site_id == sa.bindparam("k_site"),
                    batch_messages.c.message_id == sa.bindparam("k_message"),
                )
                .values(state=sa.bindparam("k_state"), updated_at=now),
                [{"k_site": s, "k_message": m, "k_state": st} for (s, m), st in ended.items()],
            )


class BatchStore:
    """Records submissions and answers questions about batches."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db

    async def record(
        self,
        *,
        batch_id: str,
        group_id: str,
        site_id: str,
        channel: str,
        message_ids: Sequence[str],
        actor: str,
    ) -> None:
        """A submission's batch and its messages as `accepted` (a retried submission, same
        batch id, changes nothing)."""
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            await session.execute(
                insert_ignoring_duplicates(
                    session,
                    batches,
                    [
                        {
                            "batch_id": batch_id,
                            "group_id": group_id,
                            "site_id": site_id,
                            "channel": channel,
                            "total": len(message_ids),
                            "submitted_at": now,
                            "submitted_by": actor[:200],
                        }
                    ],
                )
            )
            # Known from the bus first (a projection ahead of this write): now the total is known.
            await session.execute(
                sa.update(batches)
                .where(batches.c.batch_id == batch_id, batches.c.total.is_(None))
                .values(total=len(message_ids), submitted_by=actor[:200])
            )
            await session.execute(
                insert_many_ignoring_duplicates(session, batch_messages),
                [
                    {
                        "site_id": site_id,
                        "message_id": m,
                        "batch_id": batch_id,
                        "state": "accepted",
                        "updated_at": now,
                    }
                    for m in message_ids
                ],
            )

    async def forget(self, batch_id: str, site_id: str, message_ids: Sequence[str]) -> None:
        """Messages the outbox refused were never accepted: out of the batch and its total."""
        if not message_ids:
            return
        async with self.db() as session, session.begin():
            gone = await session.execute(
                sa.delete(batch_messages).where(
                    batch_messages.c.site_id == site_id,
                    batch_messages.c.message_id.in_(list(message_ids)),
                    batch_messages.c.state == "accepted",
                )
            )
            await session.execute(
                sa.update(batches)
                .where(batches.c.batch_id == batch_id)
                .values(total=batches.c.total - gone.rowcount)  # type: ignore[attr-defined]
            )

    async def get(self, batch_id: str) -> Batch | None:
        """A batch with its counts, or None."""
        async with self.db() as session:
            row = (
                await session.execute(sa.select(batches).where(batches.c.batch_id == batch_id))
            ).first()
            if row is None:
                return None
            counts = await _counts(session, {batch_id: row.site_id})
        return _batch(row, counts.get(batch_id, {}))

    async def of_site(self, site_id: str, limit: int = 20) -> list[Batch]:
        """A site's latest batches, newest first."""
        async with self.db() as session:
            rows = (
                await session.execute(
                    sa.select(batches)
                    .where(batches.c.site_id == site_id)
                    .order_by(batches.c.submitted_at.desc())
                    .limit(limit)
                )
            ).all()
            counts = await _counts(session, {r.batch_id: r.site_id for r in rows})
        return [_batch(r, counts.get(r.batch_id, {})) for r in rows]

    async def waiting(self, batch_id: str, site_id: str) -> list[str]:
        """Ids of the batch's messages not yet ended (accepted or queued)."""
        async with self.db() as session:
            rows = await session.execute(
                sa.select(batch_messages.c.message_id).where(
                    batch_messages.c.batch_id == batch_id,
                    batch_messages.c.site_id == site_id,
                    batch_messages.c.state.in_(WAITING),
                )
            )
            return [r[0] for r in rows]

    async def message_state(self, site_id: str, message_id: str) -> str | None:
        """A message's state in the read model (None when it is not known)."""
        async with self.db() as session:
            return (
                await session.execute(
                    sa.select(batch_messages.c.state).where(
                        batch_messages.c.site_id == site_id,
                        batch_messages.c.message_id == message_id,
                    )
                )
            ).scalar()

    async def batch_of_message(self, site_id: str, message_id: str) -> Batch | None:
        """The batch a message belongs to, or None."""
        async with self.db() as session:
            batch_id = (
                await session.execute(
                    sa.select(batch_messages.c.batch_id).where(
                        batch_messages.c.site_id == site_id,
                        batch_messages.c.message_id == message_id,
                    )
                )
            ).scalar()
        return await self.get(batch_id) if batch_id else None


async def _counts(session: AsyncSession, sites: dict[str, str]) -> dict[str, dict[str, int]]:
    """Per batch, its messages by state: only those of the batch's own site, so a producer
    naming another site's batch id in its messages cannot add to that batch."""
    if not sites:
        return {}
    found: dict[str, dict[str, int]] = {}
    rows = await session.execute(
        sa.select(
            batch_messages.c.batch_id,
            batch_messages.c.site_id,
            batch_messages.c.state,
            sa.func.count(),
        )
        .where(batch_messages.c.batch_id.in_(list(sites)))
        .group_by(batch_messages.c.batch_id, batch_messages.c.site_id, batch_messages.c.state)
    )
    for batch_id, site_id, state, count in rows:
        if sites.get(batch_id) == site_id:
            found.setdefault(batch_id, {})[state] = count
    return found


def _batch(row: Any, counts: dict[str, int]) -> Batch:
    submitted = row.submitted_at
    if submitted.tzinfo is None:  # SQLite gives naive UTC back
        submitted = submitted.replace(tzinfo=UTC)
    return Batch(
        batch_id=row.batch_id,
        group_id=row.group_id,
        site_id=row.site_id,
        channel=row.channel,
        submitted_at=submitted,
        submitted_by=row.submitted_by,
        progress=progress(row.total, counts),
    )
