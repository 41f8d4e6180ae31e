"""Send-now: each `SendNowRequested` on CONTROL becomes one manual tick.

Replicas share the durable pull consumer `scheduler-send-now`, so each request reaches one of
them; a request is acknowledged only once its tick is stored. The tick's id derives from the
request's event id, so a redelivery (or a second replica after a lost acknowledgement) stores
it once. The manual tick ignores the pace and the sessions — someone asked for it — but not a
blackout: during one, the tick is held until the blackout ends (`not_before`). A message that
is not a send-now request is dead-lettered with the reason and the consumer carries on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck

from services.scheduler.adapters import metrics
from services.scheduler.adapters.clock import Clock
from services.scheduler.adapters.issuing import TickSink, manual_tick
from services.scheduler.config import SchedulerConfig
from services.scheduler.domain.planning import (
    Channel,
    next_open_instant,
    open_time,
    outside_blackouts,
)
from services.scheduler.handlers.directory import SiteDirectory
from shared.bus.deadletter import NatsDeadLetters
from shared.bus.pull_loop import ACK, Poison, PullLoop, Retry, Verdict
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
        settings: SchedulerConfig,
    ) -> None:
        self._nc = nc
        self._directory = directory
        self._sink = sink
        self._clock = clock
        self._settings = settings
        self._loop: PullLoop | None = None
        self._stopped = False

    def stop(self) -> None:
        """Leave `run` after the requests in hand."""
        self._stopped = True
        if self._loop is not None:
            self._loop.stop()

    async def run(self) -> None:
        """Fetch and handle requests until stopped."""
        js = self._nc.jetstream()
        spec = await ensure_consumer(js, CONSUMER)
        self._loop = PullLoop(js, spec, self.handle, NatsDeadLetters(self._nc), batch=32)
        if not self._stopped:
            await self._loop.run()

    @property
    def ready(self) -> bool:
        """True while subscribed."""
        return self._loop is not None and self._loop.ready

    async def handle(self, messages: Sequence[Msg]) -> list[Verdict]:
        """Handle fetched requests one by one; a verdict for each."""
        return [await self._handle_one(msg) for msg in messages]

    async def _handle_one(self, msg: Msg) -> Verdict:
        try:
            outcome, verdict = await self._handle(msg)
        except Exception as exc:
            deliveries = msg.metadata.num_delivered
            if deliveries >= FAILED_ATTEMPTS:
                # Never redeliver forever: park it with the error for an operator.
                log.exception("send-now request failed again; dead-lettered")
                outcome, verdict = _dead(f"failed {deliveries} times: {type(exc).__name__}: {exc}")
            else:
                log.exception("send-now request failed; it will be redelivered")
                outcome, verdict = "retry", Retry(5)
        metrics.SEND_NOW.labels(outcome).inc()
        return verdict

    async def _handle(self, msg: Msg) -> tuple[str, Verdict]:
        try:
            event = decode(
                msg.headers,
                msg.data,
                stream=CONTROL,
                sequence=msg.metadata.sequence.stream,
                nats_subject=msg.subject,
            )
        except UndecodableEvent as exc:
            return _dead(f"not a Stagger event: {exc}")
        request = event.data
        if not isinstance(request, SendNowRequested):
            return _dead(f"expected {SendNowRequested.event_type}, got {event.ce_type}")
        if event.time.tzinfo is None:
            return _dead("ce-time has no time zone")
        known = self._directory.get(request.site_id)
        if known is None or known.settings is None or known.group_id != request.group_id:
            if msg.metadata.num_delivered < UNKNOWN_SITE_ATTEMPTS:
                return "retry", Retry(1)
            return _dead(
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
            return "ignored", ACK
        now = self._clock.now()
        not_before, held = _after_blackout(settings, max(now, event.time))
        if not_before is None:
            log.warning(
                "send-now ignored: the site's blackouts cover the whole week",
                extra={"site": request.site_id, "channel": request.channel, "actor": event.actor},
            )
            return "ignored", ACK
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
            return "retry", Retry(1)
        log.info(
            "send-now tick issued",
            extra={"site": request.site_id, "channel": request.channel, "actor": event.actor},
        )
        return "tick", ACK


def _dead(reason: str) -> tuple[str, Verdict]:
    return "dead_letter", Poison(reason)


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
