"""Send-now: each `SendNowRequested` on CONTROL becomes one manual tick.

Replicas share the durable pull consumer `scheduler-send-now`, so each request reaches one of
them; a request is acknowledged only once its tick is stored. The tick's id derives from the
request's event id, so a redelivery (or a second replica after a lost acknowledgement) stores
it once. The manual tick ignores the pace and the sessions — someone asked for it — but not a
blackout: during one, the tick is held until the blackout ends (`not_before`). A message that
is not a send-now request is dead-lettered with the reason and the consumer carries on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta

import nats.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck

from services.scheduler.adapters import metrics
from services.scheduler.adapters.clock import Clock
from services.scheduler.adapters.issuing import TickSink, manual_tick
from services.scheduler.config import Settings
from services.scheduler.domain.planning import (
    Channel,
    next_open_instant,
    open_time,
    outside_blackouts,
)
from services.scheduler.handlers.directory import SiteDirectory
from shared.bus.deadletter import DeadLetter, publish_dead_letters
from shared.bus.topology import CONTROL, ensure_consumer
from shared.domain.accounts import email_account_id, sms_account_id
from shared.domain.site_settings import SiteSettings
from shared.domain.wallclock import to_wall
from shared.events.codec import UndecodableEvent, decode
from shared.events.schemas.control import SendNowRequested

log = logging.getLogger(__name__)

CONSUMER = "scheduler-send-now"
UNKNOWN_SITE_ATTEMPTS = 10
FAILED_ATTEMPTS = 5
"""Deliveries of a request whose handling raised before it is dead-lettered with the error."""
"""Deliveries of a request for a site this replica does not know before it is dead-lettered
(a brand-new site's settings may still be on their way)."""


class SendNowConsumer:
    """Pulls send-now requests and publishes their manual ticks."""

    def __init__(
        self,
        nc: Client,
        directory: SiteDirectory,
        sink: TickSink,
        clock: Clock,
        settings: Settings,
    ) -> None:
        self._nc = nc
        self._directory = directory
        self._sink = sink
        self._clock = clock
        self._settings = settings
        self._stopping = False
        self.ready = False

    def stop(self) -> None:
        """Leave `run` after the request in hand."""
        self._stopping = True

    async def run(self) -> None:
        """Fetch and handle requests until stopped."""
        js = self._nc.jetstream()
        spec = await ensure_consumer(js, CONSUMER)
        subscription = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        self.ready = True
        try:
            while not self._stopping:
                try:
                    messages = await subscription.fetch(batch=32, timeout=1.0)
                except (nats.errors.TimeoutError, TimeoutError):
                    continue
                except nats.errors.Error as exc:
                    # While a cluster elects a new leader for CONTROL or the durable (a node
                    # lost) the fetch is answered 503 or fails otherwise; the durable survives.
                    # Crashing here would stop every scheduler replica at once.
                    log.warning("send-now fetch failed; retrying", extra={"error": repr(exc)})
                    await asyncio.sleep(0.5)
                    continue
                for msg in messages:
                    await self.handle(msg)
        finally:
            self.ready = False
            # A pull subscription left behind holds the connection's drain until it times out.
            with contextlib.suppress(Exception):
                await subscription.unsubscribe()

    async def handle(self, msg: Msg) -> str:
        """Handle one request; returns the outcome (`tick`, `ignored`, `retry`, `dead_letter`)."""
        try:
            outcome = await self._handle(msg)
        except Exception as exc:
            deliveries = msg.metadata.num_delivered
            if deliveries >= FAILED_ATTEMPTS:
                # Never redeliver forever: park it with the error for an operator.
                log.exception("send-now request failed again; dead-lettered")
                outcome = await self._dead_letter(
                    msg, f"failed {deliveries} times: {type(exc).__name__}: {exc}"
                )
            else:
                log.exception("send-now request failed; it will be redelivered")
                await msg.nak(delay=5)
                outcome = "retry"
        metrics.SEND_NOW.labels(outcome).inc()
        return outcome

    async def _handle(self, msg: Msg) -> str:
        try:
            event = decode(
                msg.headers,
                msg.data,
                stream=CONTROL,
                sequence=msg.metadata.sequence.stream,
                nats_subject=msg.subject,
            )
        except UndecodableEvent as exc:
            return await self._dead_letter(msg, f"not a Stagger event: {exc}")
        request = event.data
        if not isinstance(request, SendNowRequested):
            return await self._dead_letter(
                msg, f"expected {SendNowRequested.event_type}, got {event.ce_type}"
            )
        if event.time.tzinfo is None:
            return await self._dead_letter(msg, "ce-time has no time zone")
        known = self._directory.get(request.site_id)
        if known is None or known.settings is None or known.group_id != request.group_id:
            if msg.metadata.num_delivered < UNKNOWN_SITE_ATTEMPTS:
                await msg.nak(delay=1)
                return "retry"
            return await self._dead_letter(
                msg,
                f"site {request.site_id} of group {request.group_id} is unknown to the "
                f"scheduler (or its settings are unusable) after "
                f"{msg.metadata.num_delivered} deliveries",
            )
        settings = known.settings
        account = _account(settings, known.group_id, request.channel)
        if account is None:
            log.warning(
                "send-now ignored: the channel cannot send",
                extra={"site": request.site_id, "channel": request.channel, "actor": event.actor},
            )
            await msg.ack()
            return "ignored"
        now = self._clock.now()
        not_before, held = _after_blackout(settings, max(now, event.time))
        if not_before is None:
            log.warning(
                "send-now ignored: the site's blackouts cover the whole week",
                extra={"site": request.site_id, "channel": request.channel, "actor": event.actor},
            )
            await msg.ack()
            return "ignored"
        reason = f"send-now by {event.actor}: {request.reason or 'no reason given'}"
        if held:
            local = to_wall(not_before, settings.schedule(request.channel).tz)
            reason += (
                f" (held until {local:%a %H:%M} {settings.profile.timezone}: "
                "the site is in a blackout)"
            )
        message = manual_tick(
            request_id=event.id,
            requested_at=event.time,
            actor=event.actor,
            reason=reason,
            channel=request.channel,
            group_id=request.group_id,
            site_id=request.site_id,
            account=account,
            budget=self._settings.send_now_budget,
            not_before=not_before,
            valid_for=timedelta(seconds=self._settings.send_now_valid_seconds),
        )
        (result,) = await self._sink.publish([message])
        if not isinstance(result, PubAck):
            log.warning("send-now tick not stored; will retry", extra={"error": repr(result)})
            await msg.nak(delay=1)
            return "retry"
        await msg.ack()
        log.info(
            "send-now tick issued",
            extra={"site": request.site_id, "channel": request.channel, "actor": event.actor},
        )
        return "tick"

    async def _dead_letter(self, msg: Msg, reason: str) -> str:
        await publish_dead_letters(self._nc, [DeadLetter.from_msg(msg, CONSUMER, reason)])
        await msg.ack()
        return "dead_letter"


def _account(settings: SiteSettings, group_id: str, channel: Channel) -> str | None:
    if channel == "sms":
        return sms_account_id(settings.sms.provider, group_id)
    return email_account_id(settings.email, group_id)


def _after_blackout(settings: SiteSettings, at: datetime) -> tuple[datetime | None, bool]:
    """(`at`, False); or the end of the blackout holding `at` and True; or (None, True) when
    blackouts cover all the time there is."""
    opened = next_open_instant(open_time(outside_blackouts(settings)), at)
    if opened is None:
        return None, True
    if opened <= at:
        return at, False
    return opened, True
