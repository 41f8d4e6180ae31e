"""Intake: accepted messages into the ledger, each once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.sql import insert_many_ignoring_duplicates
from shared.dispatch import schema
from shared.dispatch.queue import sealing
from shared.dispatch.queue.core import QueueCore
from shared.dispatch.queue.records import INGEST_CHUNK_BITS, Incoming, Key
from shared.dispatch.queue.sql import keyed
from shared.events.schemas.dispatch import (
    MessageCancelled,
    MessageQueued,
)

log = logging.getLogger(__name__)


class Ingest(QueueCore):
    """Stores accepted messages."""

    async def ingest(self, batch: Sequence[Incoming]) -> int:
        """Store accepted messages (each once, however often redelivered); returns how many
        were new (queued, or cancelled on arrival). A message is its (site, message id):
        another site's message with the same id is another message, so no site's id can keep
        another site's message out."""
        if not batch:
            return 0
        m = self.t.messages
        now = datetime.now(UTC)
        if self.personal is not None:
            # A producer publishing to the outbox directly may send in clear: sealed here,
            # before anything is written.
            sealed = await self.personal.seal_messages([i.message for i in batch])
            batch = [replace(i, message=m) for i, m in zip(batch, sealed, strict=True)]
        async with self.db() as session, session.begin():
            # One row per message even if a batch carries a redelivered duplicate.
            # The first of them is the one stored (and announced below).
            unique: dict[Key, Incoming] = {}
            for i in batch:
                unique.setdefault((i.message.site_id, i.message.message_id), i)
            rows = [
                {
                    "message_id": i.message.message_id,
                    "group_id": i.message.group_id,
                    "site_id": i.message.site_id,
                    "recipient": i.message.recipient_tag or i.message.to,
                    "category": i.message.category,
                    "consent_category": i.message.consent_category,
                    "payload": i.message.model_dump(mode="json"),
                    "state": schema.QUEUED,
                    "attempts": 0,
                    "accepted_at": i.message.submitted_at,
                    "intake_seq": i.sequence,
                    "queued_at": now,
                    "not_before": i.message.not_before,
                    "expires_at": i.message.expires_at,
                    "traceparent": i.traceparent,
                }
                for i in unique.values()
            ]
            # In chunks of power-of-two sizes: the driver prepares and caches the multi-row
            # statement once per row count (about 1 MB each at a few hundred rows), so intake
            # batches of every size from 1 to 500 grew the gateway by hundreds of MB under
            # load. Now at most eight shapes exist. The statement is passed its rows rather
            # than built around them: SQLAlchemy compiles it once instead of on every call
            # (that compilation was an eighth of the SMS gateway's CPU in the benchmark).
            fresh: set[Key] = set()
            start = 0
            statement = insert_many_ignoring_duplicates(session, m).returning(
                m.c.site_id, m.c.message_id
            )
            while start < len(rows):
                size = 1 << min((len(rows) - start).bit_length() - 1, INGEST_CHUNK_BITS)
                inserted = await session.execute(statement, rows[start : start + size])
                fresh.update((r[0], r[1]) for r in inserted)
                start += size
            cancelled = await self._cancelled_on_arrival(
                session, {k: i for k, i in unique.items() if k not in fresh}, now
            )
            for key, item in unique.items():
                if key in fresh:
                    await self._queued(session, item)
            return len(fresh) + cancelled

    async def _queued(self, session: AsyncSession, item: Incoming) -> None:
        """The message's `queued` event, written with its row."""
        msg = item.message
        await self._event(
            session,
            msg.group_id,
            msg.site_id,
            msg.message_id,
            "queued",
            MessageQueued(
                **self._common(msg.message_id, msg.group_id, msg.site_id),
                to=msg.to,
                category=msg.category,
                consent_category=msg.consent_category or "service",
                client_reference=msg.client_reference,
                submitted_at=msg.submitted_at,
                submitted_by=item.actor,
                batch_id=msg.batch_id,
            ),
            actor=item.actor,
            correlation_id=item.correlation_id,
        )

    async def _cancelled_on_arrival(
        self, session: AsyncSession, arrived: dict[Key, Incoming], now: datetime
    ) -> int:
        """Messages a cancel named before they arrived (`cancel_pending` rows) end
        `cancelled` now, with their queued and cancelled events; returns how many.

        Each row changes by compare-and-set, so a message delivered twice (or to two
        replicas) is ended once.
        """
        if not arrived:
            return 0
        m = self.t.messages
        waiting = (
            await session.execute(
                sa.select(m.c.site_id, m.c.message_id, m.c.payload).where(
                    keyed(m, list(arrived)), m.c.state == schema.CANCEL_PENDING
                )
            )
        ).all()
        ended = 0
        for row in waiting:
            item = arrived[(row.site_id, row.message_id)]
            msg = item.message
            changed = await session.execute(
                sa.update(m)
                .where(
                    m.c.site_id == msg.site_id,
                    m.c.message_id == msg.message_id,
                    m.c.state == schema.CANCEL_PENDING,
                )
                .values(
                    group_id=msg.group_id,
                    recipient=msg.recipient_tag or msg.to,
                    consent_category=msg.consent_category,
                    category=msg.category,
                    payload=msg.model_dump(mode="json"),
                    state=schema.CANCELLED,
                    accepted_at=msg.submitted_at,
                    intake_seq=item.sequence,
                    queued_at=now,
                    not_before=msg.not_before,
                    expires_at=msg.expires_at,
                    finished_at=now,
                    traceparent=item.traceparent,
                )
            )
            if not changed.rowcount:  # type: ignore[attr-defined]
                continue
            cancel = (row.payload or {}).get("cancel") or {}
            common = self._common(msg.message_id, msg.group_id, msg.site_id)
            await self._queued(session, item)
            await self._event(
                session,
                msg.group_id,
                msg.site_id,
                msg.message_id,
                "terminal",
                MessageCancelled(**common, reason=str(cancel.get("reason") or "cancelled")),
                actor=cancel.get("actor") or None,
                correlation_id=item.correlation_id,
            )
            ended += 1
        return ended

    async def seal_stored(self, chunk: int = 200) -> int:
        """Seal the rows stored before personal fields were sealed (`queue.sealing`);
        returns how many it sealed."""
        if self.personal is None:
            return 0
        return await sealing.seal_stored(self.db, self.t.messages, self.personal, chunk)

    async def seal_stored_until_done(self, retry_seconds: float = 30.0) -> None:
        """`seal_stored` in the background, retried after a failure (NATS or the database
        away for a while) instead of stopping the gateway."""
        while True:
            try:
                sealed = await self.seal_stored()
            except Exception:
                log.exception("sealing stored messages failed; retrying")
                await asyncio.sleep(retry_seconds)
                continue
            if sealed:
                log.info("stored messages sealed", extra={"rows": sealed})
            return
