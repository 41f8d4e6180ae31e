"""Carries out the alert transitions the alert projections stored: publishes each as an event
on `alerts.<group>` (ALERTS) and emails it to each of the group's admins once.

Each outbox row is published with its own id as `Nats-Msg-Id` (a publish retried after a
crash is stored once) and marked; each email is recorded per recipient once the SMTP server
took it, so a restart resumes with whoever is left. A refused email is tried again after
`retry_seconds`, never given up. (A crash between the server's acceptance and the record is
the one window in which an admin could get a second copy.)
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence

from nats.aio.client import Client

from services.config.adapters.alert_mail import AlertMailer, MailNotSent, compose
from services.config.adapters.alerts import AlertStore, Pending
from services.config.domain.aggregates import GroupState
from shared.bus import subjects
from shared.bus.topology import ALERTS
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.alerts import AlertCleared, AlertRaised

log = logging.getLogger(__name__)

POLL_SECONDS = 5.0
"""How often the outbox is looked at when nothing wakes the notifier (another replica's
projection may have queued the transition)."""


def alert_event(alert: Pending) -> AlertRaised | AlertCleared:
    """The event data of an outbox row."""
    common = {
        "alert_id": alert.alert_id,
        "group_id": alert.group_id,
        "site_id": alert.site_id,
        "condition": alert.kind,
        "key": alert.key,
        "summary": alert.summary,
        "cause_event_id": alert.cause_event_id,
    }
    if alert.transition == "raised":
        return AlertRaised.model_validate({**common, "topup_url": alert.topup_url})
    return AlertCleared.model_validate(common)


class AlertNotifier:
    """Publishes and emails stored alert transitions (background task `run`)."""

    def __init__(
        self,
        nc: Client,
        store: AlertStore,
        mailer: AlertMailer,
        groups: Callable[[str], Awaitable[GroupState | None]],
        dashboard_url: str,
        wake: Sequence[asyncio.Event],
        retry_seconds: float,
    ) -> None:
        self.nc = nc
        self.store = store
        self.mailer = mailer
        self.groups = groups
        self.dashboard_url = dashboard_url
        self.wake = wake
        self.retry_seconds = retry_seconds
        self._blocked_until: dict[str, float] = {}

    async def run(self) -> None:
        """Work through the outbox whenever a projection queues something (or every few
        seconds), until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                await self.once(loop.time())
            except Exception:
                log.exception("alert notifier failed; retrying")
            await self._sleep(POLL_SECONDS)

    async def _sleep(self, seconds: float) -> None:
        waiters = [asyncio.ensure_future(event.wait()) for event in self.wake]
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
            for event in self.wake:
                event.clear()

    async def once(self, now: float) -> None:
        """Publish and email everything pending (groups whose mail was refused recently wait)."""
        waiting = [group for group, until in self._blocked_until.items() if until > now]
        for alert in await self.store.pending(waiting=waiting):
            if not alert.published:
                await self._publish(alert)
            if self._blocked_until.get(alert.group_id, 0.0) > now:
                continue
            try:
                await self._email(alert)
            except MailNotSent as exc:
                self._blocked_until[alert.group_id] = now + self.retry_seconds
                log.warning(
                    "alert email not sent; will retry",
                    extra={"group": alert.group_id, "alert": alert.alert_id, "why": str(exc)},
                )

    async def _publish(self, alert: Pending) -> None:
        event = make_event(
            alert_event(alert),
            source="config",
            actor="service:config",
            subject=alert.alert_id,
            group_id=alert.group_id,
            site_id=alert.site_id,
            event_id=alert.event_id,
            time=alert.created_at,
        )
        headers, body = encode(event)
        await self.nc.jetstream().publish(
            subjects.alerts(alert.group_id), body, headers=headers, stream=ALERTS
        )
        await self.store.mark(alert.event_id, "published_at")

    async def _email(self, alert: Pending) -> None:
        group = await self.groups(alert.group_id)
        group_email = group.defaults.email if group is not None else None
        name = group.name if group is not None and group.name else alert.group_id
        done = await self.store.emailed(alert.event_id)
        sender = self.mailer.sender(group_email)
        for admin in await self.store.group_admins(alert.group_id):
            if admin in done:
                continue
            message = compose(alert, name, admin, sender, self.dashboard_url)
            via = await self.mailer.send(message, group_email)
            await self.store.record_email(alert.event_id, admin, via)
            log.info(
                "alert emailed",
                extra={"alert": alert.alert_id, "transition": alert.transition, "to": admin},
            )
        await self.store.mark(alert.event_id, "emailed_at")
