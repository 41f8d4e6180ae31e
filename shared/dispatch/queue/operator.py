"""Changes to queued messages not driven by a send: cancel, opt-out, expiry, retry of failed."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa

from shared.db.sql import insert_ignoring_duplicates, insert_many_ignoring_duplicates
from shared.dispatch import schema
from shared.dispatch.pending_events import event_id
from shared.dispatch.queue.core import QueueCore
from shared.dispatch.queue.records import Key
from shared.dispatch.queue.sql import keyed, utc
from shared.domain.consent import DEFAULT_CATEGORIES, KIND_CATEGORY, default_category
from shared.events.schemas.dispatch import (
    MessageCancelled,
    MessageExpired,
    MessageQueued,
    MessageSuppressed,
)
from shared.events.schemas.messages import AUTO_REPLY, MessageAccepted


class OperatorActions(QueueCore):
    """Cancels, suppresses, expires and requeues messages in bulk."""

    async def cancel(
        self,
        site_id: str,
        message_ids: Sequence[str],
        *,
        reason: str,
        actor: str,
        group_id: str | None = None,
    ) -> list[str]:
        """Cancel queued messages of a site by id.

        With `group_id`, an id this gateway has not stored yet (a message still on its way
        from the outbox) is remembered as `cancel_pending`, and intake ends it `cancelled` when
        it arrives. The remembering comes first, in its own transaction: a message stored after
        it meets the row at intake, and one stored before it is still `queued` for the update
        below, so no message slips between the two.
        """
        m = self.t.messages
        if group_id is not None and message_ids:
            now = datetime.now(UTC)
            pending = [
                {
                    "message_id": message_id,
                    "group_id": group_id,
                    "site_id": site_id,
                    "recipient": "",
                    "category": "",
                    "payload": {"cancel": {"reason": reason, "actor": actor}},
                    "state": schema.CANCEL_PENDING,
                    "attempts": 0,
                    "accepted_at": now,
                    "intake_seq": 0,
                    "queued_at": now,
                    # Retention purges a reminder nothing ever claimed, as it does ended rows.
                    "finished_at": now,
                }
                for message_id in dict.fromkeys(message_ids)
            ]
            async with self.db() as session, session.begin():
                await session.execute(insert_many_ignoring_duplicates(session, m), pending)
        return await self.finish_queued(
            state=schema.CANCELLED,
            where=[m.c.site_id == site_id, m.c.message_id.in_(list(message_ids))],
            make_event=lambda common: MessageCancelled(**common, reason=reason),
            actor=actor,
        )

    async def suppress_recipient(
        self, group_id: str, recipient: str, *, reason: str, category: str | None = None
    ) -> list[str]:
        """An opt-out: every queued message of the group to this recipient ends suppressed
        (only those of consent `category`, when one is named)."""
        m = self.t.messages
        where = [m.c.group_id == group_id, m.c.recipient == recipient]
        if category is not None:
            # Rows stored before consent categories have none: their kind's default applies.
            kinds = [k for k, c in KIND_CATEGORY.items() if c == category]
            where.append(
                sa.or_(
                    m.c.consent_category == category,
                    sa.and_(m.c.consent_category.is_(None), m.c.category.in_(kinds)),
                )
            )
        return await self.finish_queued(
            state=schema.SUPPRESSED,
            # A STOP confirmation (queued by the gateway for the opt-out itself) still goes.
            where=[*where, m.c.category != AUTO_REPLY],
            make_event=lambda common: MessageSuppressed(**common, reason=reason),
        )

    async def expire_due(self, now: datetime | None = None) -> list[str]:
        """Queued messages whose `expires_at` passed end `expired`."""
        now = now or datetime.now(UTC)
        m = self.t.messages
        rows: dict[Key, datetime] = {}
        async with self.db() as session:
            for row in await session.execute(
                sa.select(m.c.site_id, m.c.message_id, m.c.expires_at)
                .where(
                    m.c.state == schema.QUEUED, m.c.expires_at.is_not(None), m.c.expires_at <= now
                )
                .limit(1000)
            ):
                rows[(row.site_id, row.message_id)] = utc(row.expires_at)  # type: ignore[assignment]
        if not rows:
            return []
        return await self.finish_queued(
            state=schema.EXPIRED,
            where=[keyed(m, rows), m.c.expires_at <= now],
            make_event=lambda common: MessageExpired(
                **common, expires_at=rows[(common["site_id"], common["message_id"])]
            ),
        )

    async def requeue_failed(
        self, site_id: str, message_ids: Sequence[str], *, actor: str
    ) -> list[str]:
        """ "Reset failed": each failed message is sent again as a new message linked to it.

        A failed message keeps its one terminal event; its retry is a new message with its own
        life (and `retry_of` naming the original), so every message still ends exactly once.
        """
        m = self.t.messages
        query = sa.select(m).where(m.c.site_id == site_id, m.c.state == schema.FAILED)
        if message_ids:
            query = query.where(m.c.message_id.in_(list(message_ids)))
        now = datetime.now(UTC)
        created: list[str] = []
        async with self.db() as session:
            failed = (await session.execute(query.limit(10_000))).all()
        for row in failed:
            new_id = event_id(row.message_id, f"retry-after:{utc(row.finished_at)}")
            payload = dict(row.payload)
            payload["message_id"] = new_id
            message = MessageAccepted.model_validate(payload)
            async with self.db() as session, session.begin():
                inserted = await session.execute(
                    insert_ignoring_duplicates(
                        session,
                        m,
                        [
                            {
                                "message_id": new_id,
                                "group_id": row.group_id,
                                "site_id": row.site_id,
                                "recipient": row.recipient,
                                "category": row.category,
                                "consent_category": message.consent_category,
                                "payload": message.model_dump(mode="json"),
                                "state": schema.QUEUED,
                                "attempts": 0,
                                "accepted_at": now,
                                "queued_at": now,
                                "not_before": None,
                                "expires_at": row.expires_at,
                            }
                        ],
                    ).returning(m.c.message_id)
                )
                if inserted.first() is None:
                    continue
                await self._event(
                    session,
                    row.group_id,
                    row.site_id,
                    new_id,
                    "queued",
                    MessageQueued(
                        **self._common(new_id, row.group_id, row.site_id),
                        to=message.to,  # sealed when the ledger holds sealed messages
                        category=row.category,
                        consent_category=message.consent_category
                        or default_category(row.category, DEFAULT_CATEGORIES),
                        client_reference=message.client_reference,
                        submitted_at=now,
                        submitted_by=actor,
                        retry_of=row.message_id,
                    ),
                    actor=actor,
                )
                created.append(new_id)
        return created

    async def forget_metadata(self, group_id: str, finished_before: datetime) -> int:
        """A group's delivery-metadata retention (docs/privacy.md): finished messages keep
        their state and times but lose the provider's id, its answers and the release.
        Returns how many rows changed."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(m)
                .where(
                    m.c.group_id == group_id,
                    m.c.state.in_(sorted(schema.TERMINAL_STATES)),
                    m.c.finished_at < finished_before,
                    sa.or_(
                        m.c.provider_message_id.is_not(None),
                        m.c.last_error.is_not(None),
                        m.c.released_by.is_not(None),
                    ),
                )
                .values(provider_message_id=None, last_error=None, released_by=None, receipt=None)
            )
            return int(result.rowcount or 0)  # type: ignore[attr-defined]
