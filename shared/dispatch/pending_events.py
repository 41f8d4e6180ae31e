"""Transactional outbox for dispatch events.

A state change and its event are written in one SQL transaction; `EventRelay` then publishes
pending events to JetStream and deletes them once acknowledged. Event ids are deterministic
(message id + what happened), so an event published twice after a crash is stored once by
JetStream's duplicate window and recognised by id in the audit trail.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from nats.aio.client import Client
from nats.js.errors import APIError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus.publisher import Outgoing, publisher_for
from shared.events.codec import encode
from shared.events.envelope import EventData, make_event

log = logging.getLogger(__name__)


def event_id(message_id: str, what: str) -> str:
    """Deterministic id of one thing happening to one message."""
    return hashlib.sha256(f"{message_id}\x1f{what}".encode()).hexdigest()[:32]


_BUFFER = "stagger.pending_event_rows"
RELAY_LINGER_SECONDS = 0.02


def _flush_buffered(sync_session: Any) -> None:
    # `before_commit`: insert every event the transaction queued with one statement (the
    # first of two rows with one id wins, as ON CONFLICT DO NOTHING would have it).
    buffered = sync_session.info.pop(_BUFFER, None)
    if not buffered:
        return
    table, rows = buffered
    unique: dict[str, dict[str, Any]] = {}
    for row in rows:
        unique.setdefault(row["event_id"], row)
    dialect = sync_session.bind.dialect.name if sync_session.bind is not None else "sqlite"
    module = postgresql if dialect == "postgresql" else sqlite
    sync_session.execute(module.insert(table).on_conflict_do_nothing(), list(unique.values()))


async def add_event(
    session: AsyncSession,
    table: sa.Table,
    *,
    subject: str,
    data: EventData,
    event_id: str,
    actor: str,
    source: str,
    group_id: str | None = None,
    site_id: str | None = None,
    event_subject: str | None = None,
    correlation_id: str | None = None,
) -> None:
    """Queue an event inside the caller's transaction (ignored if that id is already queued).

    The events of one transaction are inserted together when it commits: one statement for
    500 messages taken in at once, not 500.
    """
    envelope = make_event(
        data,
        source=source,
        actor=actor,
        subject=event_subject,
        group_id=group_id,
        site_id=site_id,
        event_id=event_id,
        correlation_id=correlation_id,
    )
    headers, body = encode(envelope)
    buffered: tuple[sa.Table, list[dict[str, Any]]] | None = session.info.get(_BUFFER)
    if buffered is None:
        buffered = session.info[_BUFFER] = (table, [])
        sa.event.listen(session.sync_session, "before_commit", _flush_buffered, once=True)
    buffered[1].append(
        {
            "event_id": event_id,
            "subject": subject,
            "headers": headers,
            "body": body,
            # Distinct instants keep the relay's publishing order (created_at, event_id).
            "created_at": datetime.now(UTC),
        }
    )


class EventRelay:
    """Moves pending events to JetStream, oldest first, and deletes what was acknowledged."""

    def __init__(
        self,
        nc: Client,
        db: async_sessionmaker[AsyncSession],
        table: sa.Table,
        *,
        batch: int = 1000,
        sweep_seconds: float = 1.0,
    ) -> None:
        self._nc = nc
        self._db = db
        self._table = table
        self._batch = batch
        self._sweep = sweep_seconds
        self._wake = asyncio.Event()
        self.published = 0

    def nudge(self) -> None:
        """Something was committed: publish soon."""
        self._wake.set()

    async def run(self) -> None:
        """Publish forever (background task)."""
        while True:
            try:
                moved = await self.flush()
            except Exception:
                log.exception("publishing dispatch events failed; will retry")
                moved = 0
            if moved < self._batch:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._sweep)
                # Let the commits right behind this one join the next batch: a flush costs
                # two transactions and a publish round trip whatever its size.
                await asyncio.sleep(RELAY_LINGER_SECONDS)

    async def flush(self) -> int:
        """Publish one batch of pending events; returns how many were published."""
        t = self._table
        async with self._db() as session:
            rows = (
                await session.execute(
                    sa.select(t.c.event_id, t.c.subject, t.c.headers, t.c.body)
                    .order_by(t.c.created_at, t.c.event_id)
                    .limit(self._batch)
                )
            ).all()
        if not rows:
            return 0
        results = await publisher_for(self._nc).publish_all(
            [Outgoing(r.subject, bytes(r.body), dict(r.headers)) for r in rows]
        )
        done = []
        for row, result in zip(rows, results, strict=True):
            if isinstance(result, APIError):
                log.error(
                    "dispatch event refused by JetStream",
                    extra={"event_id": row.event_id, "error": result.description},
                )
                continue
            done.append(row.event_id)
        if done:
            async with self._db() as session, session.begin():
                await session.execute(sa.delete(t).where(t.c.event_id.in_(done)))
        self.published += len(done)
        return len(done)
