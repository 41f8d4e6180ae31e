"""Read-only queries and retention: depth, sends per account, purge of finished rows."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from shared.dispatch import schema
from shared.dispatch.queue.core import QueueCore


class Reports(QueueCore):
    """Counts and purges."""

    async def purge_finished(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` messages that ended before `before`; returns how many.

        Only terminal rows go (sent, failed, suppressed, cancelled, expired), and reminders of
        a cancel whose message never arrived: nothing still queued or in flight is touched.
        Their events stay in `DISPATCH` and the audit trail.
        """
        m = self.t.messages
        gone = sorted(schema.TERMINAL_STATES | {schema.CANCEL_PENDING})
        oldest = (
            sa.select(m.c.site_id, m.c.message_id)
            .where(m.c.state.in_(gone), m.c.finished_at < before)
            .limit(limit)
        )
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.delete(m).where(
                    sa.tuple_(m.c.site_id, m.c.message_id).in_(oldest),
                    m.c.state.in_(gone),
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def depth(self, site_id: str | None = None) -> int:
        """Messages waiting (queued or being sent)."""
        m = self.t.messages
        query = sa.select(sa.func.count()).where(m.c.state.in_([schema.QUEUED, schema.SENDING]))
        if site_id is not None:
            query = query.where(m.c.site_id == site_id)
        async with self.db() as session:
            return int((await session.execute(query)).scalar() or 0)

    async def depth_by_site(self) -> dict[str, int]:
        """Waiting messages per site (metrics)."""
        m = self.t.messages
        async with self.db() as session:
            rows = await session.execute(
                sa.select(m.c.site_id, sa.func.count())
                .where(m.c.state.in_([schema.QUEUED, schema.SENDING]))
                .group_by(m.c.site_id)
            )
            return {r[0]: int(r[1]) for r in rows}

    async def sent_since(self, account: str, since: datetime) -> int:
        """Messages sent through an account since an instant (rolling daily caps)."""
        m = self.t.messages
        async with self.db() as session:
            return int(
                (
                    await session.execute(
                        sa.select(sa.func.count()).where(
                            m.c.account == account, m.c.sent_at >= since
                        )
                    )
                ).scalar()
                or 0
            )
