"""Send-now requests on CONTROL become one manual tick each (the consumer in this process)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from nats.aio.client import Client

from services.scheduler.adapters import metrics
from services.scheduler.adapters.clock import RealClock
from services.scheduler.adapters.issuing import JetStreamTicks
from services.scheduler.adapters.projection import SiteRow
from services.scheduler.config import SchedulerConfig
from services.scheduler.entrypoints.send_now import CONSUMER, SendNowConsumer
from services.scheduler.handlers.directory import SiteDirectory
from services.scheduler.handlers.timer import TickTimer
from shared.bus import subjects
from shared.bus.topology import CONTROL, DEADLETTER
from shared.domain.site_settings import SiteSettings
from shared.domain.ticks import tick_id
from shared.events.codec import encode
from shared.events.envelope import Envelope, make_event
from shared.events.schemas.control import ResetFailedRequested, SendNowRequested
from shared.events.schemas.deadletter import DeadLetterRecorded
from shared.eventstore import EventStore
from tests.integration.scheduler.support import GROUP, SMTP, TickReader, settings, window
from tests.support.waiting import wait_until

MANUAL_EMAIL = {
    "enabled": True,
    "address": "frontdesk@example.com",
    "smtp": dict(SMTP),
    "mode": "manual",
}


@dataclass
class Consumer:
    nc: Client
    directory: SiteDirectory
    consumer: SendNowConsumer
    versions: int = 0

    def site(self, site_id: str, site: SiteSettings) -> None:
        self.versions += 1
        self.directory.offer([SiteRow(site_id, GROUP, self.versions, site.model_dump(mode="json"))])

    async def request(
        self, site_id: str, channel: str, *, actor: str = "user:alice", reason: str = ""
    ) -> Envelope:
        event = make_event(
            SendNowRequested(group_id=GROUP, site_id=site_id, channel=channel, reason=reason),
            source="config",
            actor=actor,
            subject=site_id,
            group_id=GROUP,
            site_id=site_id,
        )
        await EventStore(self.nc, CONTROL).append(subjects.control("send_now", site_id), event)
        return event

    async def settled(self) -> None:
        """Every request so far has been handled and acknowledged."""
        js = self.nc.jetstream()

        async def done() -> bool:
            info = await js.consumer_info(CONTROL, CONSUMER)
            return info.num_pending == 0 and info.num_ack_pending == 0

        await wait_until(done, timeout=20, message="send-now requests handled")


@pytest.fixture
async def send_now(nc: Client) -> AsyncIterator[Consumer]:
    clock = RealClock()
    sink = JetStreamTicks(nc)
    directory = SiteDirectory(TickTimer(sink, clock))  # its timer is not running
    consumer = SendNowConsumer(nc, directory, sink, clock, SchedulerConfig())
    task = asyncio.create_task(consumer.run())
    await wait_until(lambda: consumer.ready, message="consumer ready")
    yield Consumer(nc, directory, consumer)
    consumer.stop()
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.wait_for(task, 10)


async def test_send_now_becomes_one_manual_tick_with_its_actor(
    send_now: Consumer, ticks: TickReader
) -> None:
    send_now.site("s-now", settings(email=MANUAL_EMAIL))
    request = await send_now.request("s-now", "email", reason="patients waiting")
    before = datetime.now(UTC)
    (read,) = await ticks.until(lambda got: len(got) >= 1, message="the manual tick")
    tick = read.tick
    assert read.subject == subjects.tick_site("email", "s-now")
    assert tick.tick_id == tick_id(request.id, "email", request.time) == read.envelope.id
    assert (tick.manual, tick.channel, tick.scope, tick.receive) == (True, "email", "site", True)
    assert (tick.budget, tick.spacing_seconds) == (100_000, 0.0)
    assert tick.reason == "send-now by user:alice: patients waiting"
    assert read.envelope.actor == "user:alice"
    assert read.envelope.correlation_id == request.id
    assert tick.scheduled_at == request.time
    assert tick.not_after - tick.not_before == timedelta(hours=1)
    assert abs(tick.not_before - before) < timedelta(seconds=30)


async def test_a_request_handled_twice_stores_one_tick(
    send_now: Consumer, nc: Client, ticks: TickReader
) -> None:
    send_now.site("s-twice", settings(email=MANUAL_EMAIL))
    handled = metrics.SEND_NOW.labels("tick")
    before = handled._value.get()
    request = make_event(
        SendNowRequested(group_id=GROUP, site_id="s-twice", channel="sms"),
        source="config",
        actor="user:bob",
        subject="s-twice",
        group_id=GROUP,
        site_id="s-twice",
    )
    headers, body = encode(request)
    js = nc.jetstream()
    for copy in ("a", "b"):  # the same request twice, as a redelivery would bring it
        await js.publish(
            subjects.control("send_now", "s-twice"),
            body,
            headers={**headers, "Nats-Msg-Id": f"{request.id}-{copy}"},
        )
    await send_now.settled()
    assert handled._value.get() - before == 2
    await ticks.poll()
    assert [t.tick.tick_id for t in ticks.ticks] == [tick_id(request.id, "sms", request.time)]


async def test_malformed_requests_are_dead_lettered_and_the_consumer_carries_on(
    send_now: Consumer, nc: Client, ticks: TickReader
) -> None:
    send_now.site("s-dl", settings())
    js = nc.jetstream()
    await js.publish(subjects.control("send_now", "s-dl"), b"{not json")
    wrong = make_event(
        ResetFailedRequested(group_id=GROUP, site_id="s-dl", channel="sms"),
        source="config",
        actor="user:carol",
    )
    headers, body = encode(wrong)
    await js.publish(subjects.control("send_now", "s-dl"), body, headers=headers)
    await send_now.request("s-dl", "sms", actor="user:dave")
    await ticks.until(lambda got: len(got) >= 1, message="the valid request's tick")
    await send_now.settled()
    letters = [e async for e in EventStore(nc, DEADLETTER).replay()]
    reasons = [e.data.reason for e in letters if isinstance(e.data, DeadLetterRecorded)]
    assert len(reasons) == 2
    assert "not a Stagger event" in reasons[0]
    assert "expected stagger.control.send_now_requested" in reasons[1]
    assert all(e.data.consumer == CONSUMER for e in letters)  # type: ignore[attr-defined]
    assert [t.envelope.actor for t in ticks.ticks] == ["user:dave"]


async def test_blackout_holds_the_manual_tick_and_a_site_that_cannot_send_is_ignored(
    send_now: Consumer, ticks: TickReader
) -> None:
    london = ZoneInfo("Europe/London")
    now = datetime.now(london)
    start = (now - timedelta(minutes=2)).strftime("%H:%M")
    end = (now + timedelta(minutes=30)).strftime("%H:%M")
    send_now.site("s-dark", settings(blackouts=[window("all", start, end)]))
    send_now.site("s-nosms", settings(sms={"provider": {"kind": "none"}}))
    send_now.site("s-never", settings(blackouts=[window("all", "00:00", "00:00")]))
    ignored = metrics.SEND_NOW.labels("ignored")
    before = ignored._value.get()
    await send_now.request("s-nosms", "sms")
    await send_now.request("s-never", "sms")
    await send_now.request("s-dark", "sms")
    (read,) = await ticks.until(lambda got: len(got) >= 1, message="the held tick")
    await send_now.settled()
    assert ignored._value.get() - before == 2
    tick = read.tick
    assert tick.site_id == "s-dark"
    assert datetime.now(UTC) < tick.not_before <= datetime.now(UTC) + timedelta(minutes=31)
    assert tick.not_before.astimezone(london).strftime("%H:%M") == end
    assert "held until" in tick.reason and "blackout" in tick.reason
    await ticks.poll()
    assert len(ticks.ticks) == 1
