"""Opt-outs and opt-ins appended to the group's list on the bus (`shared.suppression`)."""

from __future__ import annotations

from collections.abc import Callable

from nats.aio.client import Client

from shared.events.schemas.optouts import How
from shared.privacy.codec import PersonalData
from shared.suppression import record_opt_in, record_opt_out

ACTOR = "service:sms_gateway"


class BusOptOuts:
    """Appends the gateway's opt-out and opt-in events (the event is the record)."""

    def __init__(self, nc: Callable[[], Client], personal: PersonalData | None = None) -> None:
        # The connection is made after the service declares its subscribers: read at use.
        self._nc = nc
        self.personal = personal

    async def opted_out(
        self,
        group_id: str,
        recipient: str,
        how: How,
        *,
        site_id: str | None,
        keyword: str | None = None,
        cancelled: int = 0,
        event_id: str | None = None,
        category: str | None = None,
    ) -> None:
        """The number stops receiving the group's SMS (of `category`; None = all)."""
        await record_opt_out(
            self._nc(),
            group_id=group_id,
            channel="sms",
            recipient=recipient,
            how=how,
            actor=ACTOR,
            keyword=keyword,
            site_id=site_id,
            cancelled=cancelled,
            event_id=event_id,
            category=category,
            personal=self.personal,
        )

    async def opted_in(
        self,
        group_id: str,
        recipient: str,
        how: How,
        *,
        site_id: str | None,
        keyword: str | None = None,
        event_id: str | None = None,
    ) -> None:
        """The number receives the group's SMS again."""
        await record_opt_in(
            self._nc(),
            group_id=group_id,
            channel="sms",
            recipient=recipient,
            how=how,
            actor=ACTOR,
            keyword=keyword,
            site_id=site_id,
            event_id=event_id,
            personal=self.personal,
        )
