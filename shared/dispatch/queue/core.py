"""The queue's shared ground: its tables, the event written with each change, and the
compare-and-set transitions every other part uses."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus import subjects
from shared.dispatch import schema
from shared.dispatch.pending_events import add_event, event_id
from shared.dispatch.queue.records import Claimed
from shared.dispatch.schema import DispatchTables
from shared.events.envelope import EventData
from shared.privacy.codec import PersonalData


class QueueCore:
    """A channel's queue tables and the event and transition helpers."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        tables: DispatchTables,
        channel: str,
        *,
        owner: str,
        source: str,
    ) -> None:
        self.db = db
        self.t = tables
        self.channel = channel
        self.owner = owner
        self.source = source
        # Set by a gateway that seals personal fields (docs/privacy.md): intake seals what a
        # producer sent in clear, claims open what a send needs.
        self.personal: PersonalData | None = None

    @staticmethod
    def scrub(c: Claimed, text: str) -> str:
        """`text` (a provider's error) without the opened address: an SMTP refusal names the
        recipient, and reasons go into events and the ledger, where only sealed values may."""
        if c.lookup is None or not c.recipient or len(c.recipient) < 3:
            return text
        return text.replace(c.recipient, "<recipient>")

    async def opened(self, claimed: list[Claimed]) -> list[Claimed]:
        """Claimed messages with their personal fields in clear, filed under their tag."""
        if self.personal is None:
            return claimed
        # Concurrently: a claimed batch's keys are fetched in one round trip's time, so the
        # first send of a spaced tick is not late to its slot.
        opened = await self.personal.open_messages([c.message for c in claimed])
        return [
            replace(c, recipient=m.to, message=m, lookup=c.recipient)
            for c, m in zip(claimed, opened, strict=True)
        ]

    # --- events ------------------------------------------------------------------------

    async def _event(
        self,
        session: AsyncSession,
        row_group: str,
        row_site: str,
        message_id: str,
        what: str,
        data: EventData,
        actor: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        await add_event(
            session,
            self.t.pending_events,
            subject=subjects.dispatch(self.channel, row_site),  # type: ignore[arg-type]
            data=data,
            event_id=event_id(f"{row_site}\x1f{message_id}", what),
            actor=actor or f"service:{self.channel}_gateway",
            source=self.source,
            group_id=row_group,
            site_id=row_site,
            event_subject=message_id,
            correlation_id=correlation_id,
        )

    async def event(
        self, session: AsyncSession, claimed: Claimed, what: str, data: EventData
    ) -> None:
        """Queue the event of something that happened to a claimed message (in `session`)."""
        await self._event(
            session, claimed.group_id, claimed.site_id, claimed.message_id, what, data
        )

    def common(self, message_id: str, group_id: str, site_id: str) -> dict[str, Any]:
        """The fields every dispatch event carries."""
        return self._common(message_id, group_id, site_id)

    def _common(self, message_id: str, group_id: str, site_id: str) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "group_id": group_id,
            "site_id": site_id,
            "channel": self.channel,
        }

    async def _transition(
        self,
        session: AsyncSession,
        claimed: Claimed,
        *,
        from_states: Sequence[str],
        values: dict[str, Any],
        must_own: bool,
    ) -> bool:
        m = self.t.messages
        condition = [
            m.c.site_id == claimed.site_id,
            m.c.message_id == claimed.message_id,
            m.c.state.in_(list(from_states)),
        ]
        if must_own:
            condition.append(m.c.lease_owner == self.owner)
        result = await session.execute(sa.update(m).where(*condition).values(**values))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def finish_queued(
        self,
        *,
        state: str,
        where: Sequence[sa.ColumnElement[bool]],
        make_event: Any,
        actor: str | None = None,
        limit: int = 10_000,
    ) -> list[str]:
        """Terminally finish queued messages matching `where` (cancel, suppress, expire)."""
        m = self.t.messages
        now = datetime.now(UTC)
        finished: list[str] = []
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(m)
                .where(m.c.state == schema.QUEUED, *where)
                .values(state=state, finished_at=now)
                .returning(m.c.message_id, m.c.group_id, m.c.site_id)
            )
            for row in result.all()[:limit]:
                await self._event(
                    session,
                    row.group_id,
                    row.site_id,
                    row.message_id,
                    "terminal",
                    make_event(self._common(row.message_id, row.group_id, row.site_id)),
                    actor=actor,
                )
                finished.append(row.message_id)
        return finished
