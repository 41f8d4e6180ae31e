"""Events the SMS gateway records besides the dispatch events: credits, tests, replies.

They go through the same transactional outbox as the dispatch events (`sms_pending_events`,
published by the engine's relay), so an event written together with a state change is never
lost between the commit and a crash.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.dispatch.pending_events import add_event
from shared.events.envelope import EventData, new_event_id

SOURCE = "sms_gateway"
ACTOR = "service:sms_gateway"


class GatewayEvents:
    """Writes events to the gateway's outbox and wakes the relay."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        pending_events: sa.Table,
        wake_relay: Callable[[], None],
    ) -> None:
        self._sessions = sessions
        self._table = pending_events
        self._wake_relay = wake_relay

    async def add(
        self,
        session: AsyncSession,
        subject: str,
        data: EventData,
        *,
        event_id: str | None = None,
        group_id: str | None = None,
        site_id: str | None = None,
        about: str | None = None,
        actor: str = ACTOR,
    ) -> None:
        """Queue an event inside the caller's transaction."""
        await add_event(
            session,
            self._table,
            subject=subject,
            data=data,
            event_id=event_id or new_event_id(),
            actor=actor,
            source=SOURCE,
            group_id=group_id,
            site_id=site_id,
            event_subject=about,
        )

    async def emit(self, subject: str, data: EventData, **kwargs: str | None) -> None:
        """Queue an event in a transaction of its own and publish it soon."""
        async with self._sessions() as session, session.begin():
            await self.add(session, subject, data, **kwargs)  # type: ignore[arg-type]
        self.nudge()

    def nudge(self) -> None:
        """Something was committed: publish soon."""
        self._wake_relay()
