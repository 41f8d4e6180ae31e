"""Claims and leases: which replica sends which message, and taking over a crashed one's."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from shared.dispatch import schema
from shared.dispatch.queue.core import QueueCore
from shared.dispatch.queue.records import Claimed, Key
from shared.dispatch.queue.sql import claim_order, claim_sites, keyed, picked, utc
from shared.events.schemas.dispatch import (
    Release,
)
from shared.events.schemas.messages import MessageAccepted


class Claims(QueueCore):
    """Claims messages under a lease, renews and takes over leases."""

    async def claim(
        self,
        site_ids: Sequence[str],
        limit: int,
        *,
        now: datetime | None = None,
        lease: timedelta = timedelta(seconds=60),
        release: Release | None = None,
        exclude: Collection[Key] = (),
    ) -> list[Claimed]:
        """Take up to `limit` sendable messages of these sites, oldest first, under a lease."""
        if limit <= 0 or not site_ids:
            return []
        now = now or datetime.now(UTC)
        m = self.t.messages
        async with self.db() as session, session.begin():
            eligible = (
                sa.select(m.c.site_id, m.c.message_id)
                .where(
                    claim_sites(session, m, site_ids),
                    m.c.state == schema.QUEUED,
                    sa.or_(m.c.next_attempt_at.is_(None), m.c.next_attempt_at <= now),
                    sa.or_(m.c.not_before.is_(None), m.c.not_before <= now),
                )
                .order_by(claim_order(session, m, site_ids), m.c.intake_seq, m.c.message_id)
                .limit(limit)
            )
            if exclude:
                eligible = eligible.where(sa.not_(keyed(m, exclude)))
            result = await session.execute(
                sa.update(m)
                .where(picked(session, m, eligible), m.c.state == schema.QUEUED)
                .values(
                    state=schema.SENDING,
                    lease_owner=self.owner,
                    lease_until=now + lease,
                    released_by=release.model_dump(mode="json") if release else None,
                )
                .returning(
                    m.c.message_id,
                    m.c.group_id,
                    m.c.site_id,
                    m.c.recipient,
                    m.c.payload,
                    m.c.attempts,
                    m.c.accepted_at,
                    m.c.intake_seq,
                    m.c.expires_at,
                    m.c.traceparent,
                )
            )
            rows = list(result.all())
        rows.sort(key=lambda r: (utc(r.accepted_at), r.intake_seq, r.message_id))
        return await self.opened([_claimed(r, release) for r in rows])

    async def extend_lease(self, keys: Collection[Key], lease: timedelta) -> None:
        """Keep holding messages whose send is taking long."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            await session.execute(
                sa.update(m)
                .where(
                    keyed(m, keys),
                    m.c.state == schema.SENDING,
                    m.c.lease_owner == self.owner,
                )
                .values(lease_until=datetime.now(UTC) + lease)
            )

    async def confirm_lease(self, key: Key, lease: timedelta) -> bool:
        """Whether this replica still holds `key`'s lease, extending it by `lease` if so: the
        fence a send passes just before its provider call."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(m)
                .where(
                    keyed(m, [key]),
                    m.c.state == schema.SENDING,
                    m.c.lease_owner == self.owner,
                )
                .values(lease_until=datetime.now(UTC) + lease)
            )
            return int(result.rowcount or 0) == 1  # type: ignore[attr-defined]

    async def renew_leases(self, lease: timedelta, keys: Sequence[Key]) -> int:
        """Keep alive the leases of the messages this replica is still working on.

        A claimed message can wait for a send slot (or a throttle slot) longer than one lease;
        without renewal another replica — or this one's own recovery — would take it over and
        requeue it while it is still about to be sent. A crashed replica renews nothing, and
        neither does a live one for a message whose work ended without a terminal write: those
        leases run out and are reconciled.
        """
        m = self.t.messages
        renewed = 0
        until = datetime.now(UTC) + lease
        async with self.db() as session, session.begin():
            for start in range(0, len(keys), 500):
                result = await session.execute(
                    sa.update(m)
                    .where(
                        keyed(m, keys[start : start + 500]),
                        m.c.state == schema.SENDING,
                        m.c.lease_owner == self.owner,
                    )
                    .values(lease_until=until)
                )
                renewed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return renewed

    async def take_over_expired(
        self, now: datetime, limit: int = 100, lease: timedelta = timedelta(seconds=60)
    ) -> list[Claimed]:
        """Leases left by a crashed replica: take them over (to reconcile, never to resend
        blindly)."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            stale = (
                sa.select(m.c.site_id, m.c.message_id)
                .where(m.c.state == schema.SENDING, m.c.lease_until < now)
                .limit(limit)
            )
            result = await session.execute(
                sa.update(m)
                .where(
                    picked(session, m, stale), m.c.state == schema.SENDING, m.c.lease_until < now
                )
                .values(lease_owner=self.owner, lease_until=now + lease)
                .returning(
                    m.c.message_id,
                    m.c.group_id,
                    m.c.site_id,
                    m.c.recipient,
                    m.c.payload,
                    m.c.attempts,
                    m.c.released_by,
                    m.c.expires_at,
                    m.c.traceparent,
                )
            )
            rows = result.all()
        return await self.opened(
            [
                _claimed(r, Release.model_validate(r.released_by) if r.released_by else None)
                for r in rows
            ]
        )


def _claimed(row: sa.Row[Any], release: Release | None) -> Claimed:
    """A claimed row as the sender takes it (still sealed: `opened` opens it)."""
    return Claimed(
        row.message_id,
        row.group_id,
        row.site_id,
        row.recipient,
        MessageAccepted.model_validate(row.payload),
        row.attempts,
        release,
        utc(row.expires_at),
        row.traceparent,
    )
