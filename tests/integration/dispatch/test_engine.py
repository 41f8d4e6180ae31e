"""The delivery engine: intake once, release on ticks, exactly one terminal event each."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import DISPATCH, TICKS
from shared.dispatch.adapter import SendResult
from shared.dispatch.tuning import EngineTuning
from shared.domain.ticks import tick_id
from shared.events.codec import decode, encode
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import TERMINAL_TYPES
from shared.events.schemas.ticks import TickIssued
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    engine_running,
    make_site,
    send_tick,
    submit,
)
from tests.support.waiting import wait_until


async def dispatch_events(nc: Client) -> list:
    js = nc.jetstream()
    info = await js.stream_info(DISPATCH)
    events = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        try:
            msg = await js.get_msg(DISPATCH, seq)
        except Exception:
            continue
        events.append(decode(msg.headers, msg.data))
    return events


def terminal_counts(events: list) -> Counter:
    return Counter(e.data.message_id for e in events if e.type in TERMINAL_TYPES)


async def states(service) -> Counter:
    m = SMS_TABLES.messages
    async with service.engine.queue.db() as session:
        rows = await session.execute(sa.select(m.c.state, sa.func.count()).group_by(m.c.state))
        return Counter({r[0]: r[1] for r in rows})


async def test_messages_wait_for_ticks_and_go_once_each(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-a")
    provider = FakeProvider()
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)) as svc:
        ids = await submit(nc, "site-a", 30)
        await wait_until(lambda: _depth(svc, 30), timeout=40, message="30 queued")
        assert provider.sent == [], "nothing goes without a tick"
        await send_tick(nc, "site-a", budget=10)
        await wait_until(lambda: len(provider.sent) == 10, timeout=15, message="10 sent")
        await send_tick(nc, "site-a", budget=50, at=None)
        await wait_until(lambda: len(provider.sent) == 30, timeout=15, message="all sent")
        await wait_until(lambda: _terminal(nc, 30), timeout=15, message="30 terminal events")
    assert sorted(m for m, _ in provider.sent) == sorted(ids)
    # Oldest first: the first tick took the first ten submitted.
    assert [m for m, _ in provider.sent[:10]] == ids[:10]
    events = await dispatch_events(nc)
    assert set(terminal_counts(events).values()) == {1}
    assert sum(1 for e in events if e.type == "stagger.dispatch.queued") == 30
    sent = [e for e in events if e.type == "stagger.dispatch.sent"]
    assert all(e.data.released_by and e.data.released_by.reason == "test tick" for e in sent)


def _gaps(times: Iterable[datetime]) -> list[float]:
    """Seconds between consecutive instants."""
    return [(b - a).total_seconds() for a, b in itertools.pairwise(times)]


@pytest.mark.parametrize("first_call_late", [0.0, 0.3], ids=["on_time", "first_call_late"])
async def test_spacing_is_respected_within_a_tick(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, first_call_late: float
) -> None:
    """Sends go `spacing` apart, counted from when each provider call began: a first call
    that began late (its adapter had to start a process first) pushes the next one back."""
    await make_site(nc, group="g1", site="site-b")
    provider = FakeProvider(first_call_late=first_call_late)
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)) as svc:
        await submit(nc, "site-b", 4)
        await wait_until(lambda: _depth(svc, 4), timeout=15, message="queued")
        await send_tick(nc, "site-b", budget=4, spacing=0.4)
        await wait_until(lambda: len(provider.sent) == 4, timeout=15, message="sent")
    gaps = _gaps(t for _, t in provider.sent)
    assert all(g >= 0.39 for g in gaps), gaps


async def test_spacing_holds_across_consecutive_ticks(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    """A cycle's last send and the next cycle's first are still `spacing` apart."""
    await make_site(nc, group="g1", site="site-p")
    provider = FakeProvider()
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)) as svc:
        await submit(nc, "site-p", 4)
        await wait_until(lambda: _depth(svc, 4), timeout=15, message="queued")
        await send_tick(nc, "site-p", budget=2, spacing=1.0)
        await wait_until(lambda: len(provider.sent) == 2, timeout=15, message="first cycle")
        await send_tick(nc, "site-p", budget=2, spacing=1.0)
        await wait_until(lambda: len(provider.sent) == 4, timeout=15, message="second cycle")
    gaps = _gaps(t for _, t in provider.sent)
    assert all(g >= 0.95 for g in gaps), gaps


async def test_one_sites_spaced_sends_do_not_hold_back_another_site(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    """With one tick worker and one send slot, a site whose sends wait out their spacing
    still leaves the replica free to start another site's sends."""
    await make_site(nc, group="g1", site="site-d")
    await make_site(nc, group="g1", site="site-e")
    provider = FakeProvider()
    settings = EngineTuning(recovery_seconds=0.5, tick_workers=1, parallel_sends=1)
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(provider), settings
    ) as svc:
        d = await submit(nc, "site-d", 3, prefix="d")
        e = await submit(nc, "site-e", 3, prefix="e")
        await wait_until(lambda: _depth(svc, 6), timeout=15, message="queued")
        await send_tick(nc, "site-d", budget=3, spacing=3.0)
        await wait_until(lambda: len(provider.sent) == 1, timeout=15, message="d's first send")
        ticked = datetime.now(UTC)
        await send_tick(nc, "site-e", budget=3, spacing=3.0)
        await wait_until(lambda: len(provider.sent) == 6, timeout=30, message="all sent")
    sent = dict(provider.sent)
    first_e = min(sent[m] for m in e)
    assert (first_e - ticked).total_seconds() < 2.0, "site e waited for site d's spacing"
    for ids in (d, e):
        gaps = _gaps(sorted(sent[m] for m in ids))
        assert all(g >= 2.95 for g in gaps), gaps


async def test_an_immediate_tick_takes_messages_that_arrive_in_its_window(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    """An account tick that found the queue empty still releases messages taken in before its
    window ends, instead of leaving them for the next tick."""
    await make_site(nc, group="g1", site="site-i")
    provider = FakeProvider()
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)):
        now = datetime.now(UTC)
        tid = tick_id("acct-i", "sms", now)
        tick = TickIssued(
            tick_id=tid,
            channel="sms",
            scope="account",
            account="acct-i",
            sites=["site-i"],
            budget=10,
            spacing_seconds=0.0,
            scheduled_at=now,
            not_before=now,
            not_after=now + timedelta(seconds=5),
            reason="test: immediate",
        )
        headers, body = encode(make_event(tick, source="tests", actor="test", event_id=tid))
        await publisher_for(nc).publish_all(
            [Outgoing(subjects.tick_account("sms", "acct-i"), body, headers)]
        )
        js = nc.jetstream()

        async def tick_taken() -> bool:
            info = await js.consumer_info(TICKS, "sms-ticks")
            return info.num_ack_pending == 1

        await wait_until(tick_taken, timeout=5, message="the tick delivered, not yet done")
        ids = await submit(nc, "site-i", 3, prefix="i")
        await wait_until(lambda: len(provider.sent) == 3, timeout=10, message="3 sent")
        sent_at = max(t for _, t in provider.sent)
    assert sorted(m for m, _ in provider.sent) == sorted(ids)
    assert sent_at <= tick.not_after, "sent within the tick's window"


async def test_transient_failures_retry_then_fail_with_reason(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-c")
    provider = FakeProvider()
    settings = EngineTuning(
        recovery_seconds=0.5, max_attempts=3, retry_base_seconds=0.1, retry_cap_seconds=0.2
    )
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(provider), settings
    ) as svc:
        ids = await submit(nc, "site-c", 2)
        provider.script[ids[0]] = [SendResult("retry", error="503 busy")] * 2 + [SendResult("sent")]
        provider.script[ids[1]] = [SendResult("retry", error="503 busy")] * 5
        await wait_until(lambda: _depth(svc, 2), timeout=15, message="queued")
        for _ in range(6):
            await send_tick(nc, "site-c", budget=2)
            await asyncio.sleep(0.3)  # ticks are separate instants; this only spaces them
        await wait_until(lambda: _terminal(nc, 2), timeout=20, message="both ended")
    events = await dispatch_events(nc)
    ends = {e.data.message_id: e for e in events if e.type in TERMINAL_TYPES}
    assert ends[ids[0]].type == "stagger.dispatch.sent"
    assert ends[ids[0]].data.attempts == 3
    assert ends[ids[1]].type == "stagger.dispatch.failed"
    assert "503 busy" in ends[ids[1]].data.reason
    deferred = [e for e in events if e.type == "stagger.dispatch.deferred"]
    assert len(deferred) == 4


async def test_suppressed_recipient_never_reaches_the_provider(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-d")
    provider = FakeProvider(suppressed={"+447700900001"})
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)) as svc:
        ids = await submit(nc, "site-d", 3)
        await wait_until(lambda: _depth(svc, 3), timeout=15, message="queued")
        await send_tick(nc, "site-d", budget=3)
        await wait_until(lambda: _terminal(nc, 3), timeout=15, message="ended")
    events = await dispatch_events(nc)
    ends = {e.data.message_id: e.type for e in events if e.type in TERMINAL_TYPES}
    assert ends[ids[1]] == "stagger.dispatch.suppressed"
    assert provider.count(ids[1]) == 0
    assert len(provider.sent) == 2


async def test_expired_tick_is_not_acted_on(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-e")
    provider = FakeProvider()
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)) as svc:
        await submit(nc, "site-e", 2)
        await wait_until(lambda: _depth(svc, 2), timeout=15, message="queued")
        from datetime import UTC, datetime

        await send_tick(
            nc,
            "site-e",
            budget=2,
            at=datetime.now(UTC) - timedelta(minutes=10),
            not_after=timedelta(minutes=1),
        )
        await wait_until(lambda: _ticks_consumed(nc), timeout=10, message="tick taken")
        assert provider.sent == []
        assert (await states(svc))["queued"] == 2


async def test_crashed_sender_is_reconciled_not_resent(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-f")
    provider = FakeProvider(stall=asyncio.Event())
    settings = EngineTuning(recovery_seconds=0.3, lease_seconds=1.0)
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(provider), settings, instance="doomed"
    ) as svc:
        ids = await submit(nc, "site-f", 2)
        await wait_until(lambda: _depth(svc, 2), timeout=15, message="queued")
        # The provider has the first message already (the crash came after it accepted it).
        provider.known.add(ids[0])
        await send_tick(nc, "site-f", budget=2)
        await wait_until(lambda: _states_has(svc, "sending", 2), timeout=10, message="claimed")
        # Both in the provider's hands (claimed is not enough: a release still checking the
        # account's limits when draining starts puts them back unsent).
        await wait_until(lambda: provider.stalled == 2, timeout=10, message="sends in flight")
        # "Crash": the replica stops without finishing; its leases will expire.
        svc.engine.draining = True
    provider.stall = None
    async with engine_running(
        nats_url, database_url, tmp_path, FakeAdapter(provider), settings, instance="survivor"
    ) as svc2:
        await wait_until(lambda: _states_has(svc2, "sent", 1), timeout=15, message="reconciled")
        await wait_until(lambda: _states_has(svc2, "queued", 1), timeout=15, message="requeued")
        assert provider.count(ids[0]) == 0, "reconciled from the provider, not sent again"
        await send_tick(nc, "site-f", budget=5)
        await wait_until(lambda: _states_has(svc2, "sent", 2), timeout=15, message="all sent")
    events = await dispatch_events(nc)
    ends = [e for e in events if e.type in TERMINAL_TYPES]
    assert Counter(e.data.message_id for e in ends) == Counter(ids)
    reconciled = next(e for e in ends if e.data.message_id == ids[0])
    assert reconciled.data.reconciled is True


async def _depth(service, n: int) -> bool:
    return await service.engine.queue.depth() == n


async def _states_has(service, state: str, n: int) -> bool:
    return (await states(service))[state] == n


async def _terminal(nc: Client, n: int) -> bool:
    return sum(terminal_counts(await dispatch_events(nc)).values()) >= n


async def _ticks_consumed(nc: Client) -> bool:
    info = await nc.jetstream().stream_info("TICKS")
    return info.state.messages == 0
