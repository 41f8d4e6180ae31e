"""Ticks as messages: the `TickIssued` CloudEvent, its subject and its deterministic id.

Every replica that schedules the same tick builds the same bytes: the id comes from
(site or account, channel, scheduled instant) and the event time is the scheduled instant, so
JetStream's duplicate window keeps one copy whoever publishes first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Protocol

from nats.aio.client import Client
from nats.js.api import PubAck
from nats.js.errors import APIError

from services.scheduler.domain.planning import AccountTerms, Channel, SitePlan, Slot
from shared.bus import subjects
from shared.bus.publisher import Outgoing, PipelinedPublisher
from shared.domain.ticks import tick_id
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.ticks import TickIssued

SOURCE = "scheduler"
ACTOR = "service:scheduler"

PublishResult = PubAck | APIError | BaseException


class TickSink(Protocol):
    """Where ticks go: one result per message, in order."""

    async def publish(self, messages: Sequence[Outgoing]) -> list[PublishResult]:
        """Publish a batch; never raises for a message that was not stored."""
        ...


class JetStreamTicks:
    """Publishes ticks to the TICKS stream, pipelined, every acknowledgement checked.

    A message that is not acknowledged in time is resent once (safe: `Nats-Msg-Id` is the
    tick id); after that it is reported as failed rather than retried for ever, because a
    tick published long after its instant is worthless.
    """

    def __init__(
        self, nc: Client, *, timeout: float = 5.0, attempts: int = 2, max_in_flight: int = 20_000
    ) -> None:
        # Its own publisher (not the connection's shared one): a minute's burst of ticks goes
        # out as one pipeline, and a tick's acknowledgement timeout is short.
        self._publisher = PipelinedPublisher(nc, max_in_flight=max_in_flight, timeout=timeout)
        self._attempts = attempts

    async def publish(self, messages: Sequence[Outgoing]) -> list[PublishResult]:
        """Publish `messages`; a batch that could not be stored comes back as exceptions."""
        if not messages:
            return []
        try:
            acks = await self._publisher.publish_all(messages, attempts=self._attempts)
        except Exception as exc:  # timeouts, a closed or reconnecting connection
            return [exc] * len(messages)
        return list(acks)


def site_tick(plan: SitePlan, slot: Slot) -> Outgoing:
    """An automatic tick of one site (staggered SMS or an email cycle)."""
    identifier = tick_id(plan.site_id, plan.channel, slot.instant)
    data = TickIssued(
        tick_id=identifier,
        channel=plan.channel,
        scope="site",
        group_id=plan.group_id,
        site_id=plan.site_id,
        account=plan.account,
        budget=plan.budget(slot),
        spacing_seconds=plan.spacing_seconds,
        scheduled_at=slot.instant,
        not_before=slot.instant,
        not_after=slot.not_after,
        reason=plan.reason,
        receive=plan.receive,
    )
    return _message(
        data,
        subjects.tick_site(plan.channel, plan.site_id),
        subject=plan.site_id,
        group_id=plan.group_id,
        site_id=plan.site_id,
        instant=slot.instant,
    )


def account_tick(account: str, terms: AccountTerms, slot: Slot) -> Outgoing:
    """A tick of a provider account shared by sites in immediate SMS mode."""
    identifier = tick_id(account, "sms", slot.instant)
    data = TickIssued(
        tick_id=identifier,
        channel="sms",
        scope="account",
        group_id=terms.group_id,
        account=account,
        sites=list(terms.sites),
        budget=terms.budget,
        spacing_seconds=terms.spacing_seconds,
        scheduled_at=slot.instant,
        not_before=slot.instant,
        not_after=slot.not_after,
        reason=terms.reason,
    )
    return _message(
        data,
        subjects.tick_account("sms", account),
        subject=account,
        group_id=terms.group_id,
        site_id=None,
        instant=slot.instant,
    )


def manual_tick(
    *,
    request_id: str,
    requested_at: datetime,
    actor: str,
    reason: str,
    channel: Channel,
    group_id: str,
    site_id: str,
    account: str,
    budget: int,
    not_before: datetime,
    valid_for: timedelta,
) -> Outgoing:
    """The one manual tick of a send-now request; its id derives from the request's id."""
    identifier = tick_id(request_id, channel, requested_at)
    data = TickIssued(
        tick_id=identifier,
        channel=channel,
        scope="site",
        group_id=group_id,
        site_id=site_id,
        account=account,
        budget=budget,
        spacing_seconds=0.0,
        scheduled_at=requested_at,
        not_before=not_before,
        not_after=not_before + valid_for,
        reason=reason,
        manual=True,
        receive=channel == "email",
    )
    return _message(
        data,
        subjects.tick_site(channel, site_id),
        subject=site_id,
        group_id=group_id,
        site_id=site_id,
        instant=requested_at,
        actor=actor,
        correlation_id=request_id,
    )


def _message(
    data: TickIssued,
    nats_subject: str,
    *,
    subject: str,
    group_id: str | None,
    site_id: str | None,
    instant: datetime,
    actor: str = ACTOR,
    correlation_id: str | None = None,
) -> Outgoing:
    envelope = make_event(
        data,
        source=SOURCE,
        actor=actor,
        subject=subject,
        group_id=group_id,
        site_id=site_id,
        correlation_id=correlation_id,
        event_id=data.tick_id,
        time=instant,
    )
    headers, body = encode(envelope)
    return Outgoing(nats_subject, body, headers)
