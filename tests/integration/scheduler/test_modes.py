"""Each mode's ticks, on simulated time against the real NATS server."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from nats.aio.client import Client

from services.scheduler.adapters import metrics
from services.scheduler.domain.planning import SitePlan, Slot
from shared.bus import subjects
from shared.domain.accounts import email_account_id, sms_account_id
from shared.domain.site_settings import SiteSettings
from tests.integration.scheduler.support import (
    GROUP,
    SMTP,
    TickReader,
    offset_of,
    settings,
    sim_scheduler,
    utc,
    window,
)

LONDON = ZoneInfo("Europe/London")
MIN = timedelta(minutes=1)
NO_SMS = {"provider": {"kind": "none"}}


def local(instant: datetime) -> str:
    return instant.astimezone(LONDON).strftime("%H:%M")


def email(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "enabled": True,
        "address": "frontdesk@example.com",
        "smtp": dict(SMTP),
        "mode": "automatic",
        "sessions": [window("mon-fri", "08:00", "18:00")],
        "check_every_minutes": 7,
        "per_minute": 3,
    }
    base.update(fields)
    return base


async def simulate(
    nc: Client,
    reader: TickReader,
    sites: dict[str, SiteSettings],
    start: datetime,
    end: datetime,
    *,
    expect: int,
    account_period: timedelta = timedelta(seconds=1),
) -> None:
    async with sim_scheduler(nc, start, account_period=account_period) as sim:
        for site_id, site in sites.items():
            sim.set_site(site_id, site)
        sim.start()
        await sim.run_until(end)
        await reader.until(lambda ticks: len(ticks) >= expect, message=f"{expect} ticks")
        await reader.poll()


async def test_email_cycles_carry_pace_and_stop_at_session_end(
    nc: Client, ticks: TickReader
) -> None:
    site = settings(sms=NO_SMS, email=email())
    # Mon 2 Jun 2025 (BST): cycles every 7 min from 08:00 local; the last at 17:55.
    await simulate(
        nc, ticks, {"s-mail": site}, utc(2025, 6, 2, 6), utc(2025, 6, 2, 17, 30), expect=86
    )
    got = ticks.of("s-mail")
    assert len(got) == 86
    assert [local(t.tick.scheduled_at) for t in got[:3]] == ["08:00", "08:07", "08:14"]
    account = email_account_id(site.email, GROUP)
    for read in got:
        tick = read.tick
        assert read.subject == subjects.tick_site("email", "s-mail")
        assert (tick.channel, tick.account, tick.receive, tick.manual) == (
            "email",
            account,
            True,
            False,
        )
        assert tick.spacing_seconds == 20.0
    assert all(t.tick.budget == 21 for t in got[:-1])  # 3 a minute for 7 minutes
    last = got[-1].tick
    o = offset_of("s-mail", "email", 7 * MIN)
    assert last.scheduled_at == utc(2025, 6, 2, 16, 55) + o
    assert local(last.not_after) == "18:00"  # bounded by the session's end
    # Only 5 minutes less the offset of sending left: the rate's slots every 20 s from there.
    assert last.budget == math.ceil((5 * MIN - o) / (20 * timedelta(seconds=1)))
    assert last.reason == (
        "email send/receive cycle every 7 min inside Mon\u2013Fri 08:00\u201318:00 "
        "(Europe/London): 3 a minute (one every 20 s)"
    )


async def test_email_budget_from_daily_cap_and_provider_limit(
    nc: Client, ticks: TickReader
) -> None:
    sites = {
        "s-nodelay": settings(sms=NO_SMS, email=email(per_minute=0, daily_cap=50)),
        "s-m365": settings(
            sms=NO_SMS,
            email=email(
                per_minute=60,
                provider_preset="microsoft_365",
                smtp={**SMTP, "username": "m365@example.com"},
            ),
        ),
    }
    await simulate(nc, ticks, sites, utc(2025, 6, 2, 6, 59), utc(2025, 6, 2, 7, 10), expect=4)
    nodelay = ticks.of("s-nodelay")[0].tick
    assert (nodelay.budget, nodelay.spacing_seconds) == (50, 0.0)
    m365 = ticks.of("s-m365")[0].tick
    # Microsoft 365 accepts 30 a minute: one every 2 s, 210 in a 7-minute cycle.
    assert (m365.budget, m365.spacing_seconds) == (210, 2.0)


async def test_email_presets_across_london_clock_changes(nc: Client, ticks: TickReader) -> None:
    site = settings(
        sms=NO_SMS,
        email=email(preset_times=["01:30", "09:00"], sessions=[window("all", "00:00", "00:00")]),
    )
    await simulate(nc, ticks, {"s-preset": site}, utc(2025, 3, 29), utc(2025, 3, 30, 12), expect=4)
    spring = [t.tick.scheduled_at for t in ticks.of("s-preset")]
    # 01:30 does not exist on Sun 30 Mar: it fires when the gap ends (02:00 BST = 01:00Z).
    assert spring == [
        utc(2025, 3, 29, 1, 30),
        utc(2025, 3, 29, 9),
        utc(2025, 3, 30, 1),
        utc(2025, 3, 30, 8),
    ]
    first = ticks.of("s-preset")[0].tick
    assert first.not_after == utc(2025, 3, 29, 9)  # until the next preset
    assert first.budget == 3 * 450  # 7.5 h at 3 a minute

    ticks.ticks.clear()
    await simulate(
        nc, ticks, {"s-preset2": site}, utc(2025, 10, 25, 12), utc(2025, 10, 26, 12), expect=2
    )
    # 01:30 happens twice on Sun 26 Oct: it fires once, at the earlier (01:30 BST = 00:30Z).
    assert [t.tick.scheduled_at for t in ticks.of("s-preset2")] == [
        utc(2025, 10, 26, 0, 30),
        utc(2025, 10, 26, 9),
    ]


async def test_disabled_manual_none_and_blacked_out_sites_get_no_ticks(
    nc: Client, ticks: TickReader
) -> None:
    sites = {
        "s-none": settings(sms=NO_SMS, email={"enabled": False}),
        "s-manual": settings(sms=NO_SMS, email=email(mode="manual")),
        "s-nosmtp": settings(sms=NO_SMS, email=email(smtp={"host": None})),
        "s-dark": settings(
            sms={"every_minutes": 30, "sessions": [window("mon", "09:00", "12:00")]},
            blackouts=[window("mon", "08:00", "13:00")],
        ),
        "s-control": settings(
            sms={"every_minutes": 30, "sessions": [window("mon", "09:00", "12:00")]}
        ),
    }
    await simulate(nc, ticks, sites, utc(2025, 6, 1, 23), utc(2025, 6, 2, 23), expect=6)
    assert {t.tick.site_id for t in ticks.ticks} == {"s-control"}
    assert len(ticks.ticks) == 6


async def test_blackout_cuts_a_session_and_the_grid_restarts_after_it(
    nc: Client, ticks: TickReader
) -> None:
    site = settings(
        sms={"every_minutes": 20, "sessions": [window("mon", "09:00", "17:00")]},
        blackouts=[window("mon", "12:10", "13:05")],
    )
    await simulate(
        nc, ticks, {"s-backup": site}, utc(2025, 6, 2, 7), utc(2025, 6, 2, 17), expect=22
    )
    got = ticks.of("s-backup")
    morning = [f"{h:02d}:{m:02d}" for h in range(9, 12) for m in (0, 20, 40)] + ["12:00"]
    afternoon = [f"{h:02d}:{m:02d}" for h in range(13, 17) for m in (5, 25, 45)]
    assert [local(t.tick.scheduled_at) for t in got] == morning + afternoon
    noon = got[len(morning) - 1].tick
    assert local(noon.not_after) == "12:10"  # not usable into the blackout
    assert "not in blackout Mon 12:10\u201313:05" in noon.reason


async def test_immediate_sms_ticks_per_account_at_its_rate(nc: Client, ticks: TickReader) -> None:
    shared = {"kind": "simulator", "account_id": "shared", "base_url": "http://127.0.0.1:9"}
    sites = {
        "s-a": settings(sms={"mode": "immediate", "provider": {**shared, "rate_per_second": 0.5}}),
        "s-b": settings(
            sms={"mode": "immediate", "provider": {**shared, "rate_per_second": 1.0}},
            blackouts=[window("sun", "10:00", "11:00")],
        ),
        "s-c": settings(
            sms={
                "mode": "staggered",
                "provider": shared,
                "every_minutes": 60,
                "sessions": [window("sun", "10:00", "11:00")],
            }
        ),
        "s-d": settings(sms={"mode": "immediate", "provider": {**shared, "account_id": "other"}}),
    }
    account = sms_account_id(sites["s-a"].sms.provider, GROUP)
    other = sms_account_id(sites["s-d"].sms.provider, GROUP)
    assert account and other
    # Sunday: outside the default Mon-Fri sessions, which immediate mode ignores.
    await simulate(
        nc,
        ticks,
        sites,
        utc(2025, 6, 1, 8),
        utc(2025, 6, 1, 10, 55),
        expect=37,
        account_period=timedelta(minutes=10),
    )
    shared_ticks = ticks.of(account)
    site_ticks = [t for t in shared_ticks if t.tick.scope == "site"]
    account_ticks = [t for t in shared_ticks if t.tick.scope == "account"]
    assert [t.tick.site_id for t in site_ticks] == ["s-c"]  # staggered stays per site
    assert [t.tick.scheduled_at for t in account_ticks] == [
        utc(2025, 6, 1, 8) + k * 10 * MIN for k in range(18)
    ]
    for read in account_ticks:
        tick = read.tick
        assert read.subject == subjects.tick_account("sms", account)
        assert (tick.scope, tick.site_id, tick.group_id) == ("account", None, "g-test")
        assert (tick.budget, tick.spacing_seconds) == (300, 2.0)  # the lower rate: 0.5/s
        assert tick.not_after == tick.scheduled_at + 10 * MIN
        in_blackout = utc(2025, 6, 1, 9) <= tick.scheduled_at < utc(2025, 6, 1, 10)
        assert tick.sites == (["s-a"] if in_blackout else ["s-a", "s-b"])
    other_ticks = ticks.of(other)
    assert len(other_ticks) == 18
    assert all(t.tick.sites == ["s-d"] and t.tick.budget == 600 for t in other_ticks)


async def test_settings_changes_apply_from_the_next_tick(nc: Client, ticks: TickReader) -> None:
    every20 = settings(sms={"every_minutes": 20, "sessions": [window("mon", "09:00", "17:00")]})
    async with sim_scheduler(nc, utc(2025, 6, 2, 7, 30)) as sim:
        sim.set_site("s-live", every20)
        sim.start()
        await sim.run_until(utc(2025, 6, 2, 9, 5))  # 10:05 local
        sim.set_site(
            "s-live",
            settings(sms={"every_minutes": 15, "sessions": [window("mon", "09:00", "17:00")]}),
        )
        await sim.run_until(utc(2025, 6, 2, 9, 59))
        # The session is removed: nothing more today.
        sim.set_site(
            "s-live",
            settings(sms={"every_minutes": 15, "sessions": [window("tue", "09:00", "17:00")]}),
        )
        await sim.run_until(utc(2025, 6, 2, 10, 40))  # 11:40 local
        # A new session 11:30-12:30 starts ticking from now (its 11:30 tick is in the past).
        sim.set_site(
            "s-live",
            settings(sms={"every_minutes": 15, "sessions": [window("mon", "11:30", "12:30")]}),
        )
        await sim.run_until(utc(2025, 6, 2, 13))
        await ticks.until(lambda got: len(got) >= 10, message="ten ticks")
        await ticks.poll()
    assert [local(t.tick.scheduled_at) for t in ticks.of("s-live")] == [
        "09:00",
        "09:20",
        "09:40",
        "10:00",  # every 20
        "10:15",
        "10:30",
        "10:45",  # every 15 from the next tick on
        "11:45",
        "12:00",
        "12:15",  # the new session
    ]


async def test_a_restarted_timer_never_replays_missed_ticks(nc: Client, ticks: TickReader) -> None:
    site = settings(sms={"every_minutes": 20, "sessions": [window("mon", "09:00", "17:00")]})
    # Every instant below is relative to the site's grid, which starts `o` after 09:00.
    o = offset_of("s-restart", "sms", 20 * MIN)
    async with sim_scheduler(nc, utc(2025, 6, 2, 7, 30)) as first:
        first.set_site("s-restart", site)
        first.start()
        await first.run_until(utc(2025, 6, 2, 9, 1) + o)  # up to 10:01 local, then it dies
    # Back at 11:00:00.5 local: within the grace, the 11:00 tick still goes; 10:20-10:40 never.
    restart = utc(2025, 6, 2, 10, 0, 0) + o + timedelta(milliseconds=500)
    async with sim_scheduler(nc, restart) as again:
        again.set_site("s-restart", site)
        again.start()
        await again.run_until(utc(2025, 6, 2, 10, 50) + o)
    # And a start 2 s after an instant (beyond the grace) skips that instant.
    async with sim_scheduler(nc, utc(2025, 6, 2, 11, 0, 2) + o) as late:
        late.set_site("s-restart", site)
        late.start()
        await late.run_until(utc(2025, 6, 2, 11, 30) + o)
    await ticks.until(lambda got: len(got) >= 8, message="eight ticks")
    await ticks.poll()
    assert [local(t.tick.scheduled_at) for t in ticks.of("s-restart")] == [
        "09:00",
        "09:20",
        "09:40",
        "10:00",
        "11:00",
        "11:20",
        "11:40",
        "12:20",
    ]


async def test_two_timers_store_each_tick_once(nc: Client, ticks: TickReader) -> None:
    site = settings(sms={"every_minutes": 5, "sessions": [window("mon", "09:00", "12:00")]})
    duplicates = metrics.TICKS_DUPLICATE.labels("sms", "site")
    before = duplicates._value.get()
    async with (
        sim_scheduler(nc, utc(2025, 6, 2, 7, 59)) as one,
        sim_scheduler(nc, utc(2025, 6, 2, 7, 59, 59)) as two,
    ):
        for sim in (one, two):
            sim.set_site("s-twice", site)
            sim.start()
        for hour in (9, 10, 11):
            await one.run_until(utc(2025, 6, 2, hour))
            await two.run_until(utc(2025, 6, 2, hour) + timedelta(seconds=0.3))
        await ticks.until(lambda got: len(got) >= 36, message="36 ticks")
        await ticks.poll()
    instants = [t.tick.scheduled_at for t in ticks.of("s-twice")]
    o = offset_of("s-twice", "sms", 5 * MIN)
    assert instants == [utc(2025, 6, 2, 8) + o + k * 5 * MIN for k in range(36)]
    assert duplicates._value.get() - before >= 30  # the second timer published them too


async def test_a_schedule_that_fails_is_dropped_and_the_others_go_on(
    nc: Client, ticks: TickReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    budget = SitePlan.budget

    def failing(self: SitePlan, slot: Slot) -> int:
        if self.site_id == "s-broken":
            raise RuntimeError("planning bug")
        return budget(self, slot)

    monkeypatch.setattr(SitePlan, "budget", failing)
    site = settings(sms={"every_minutes": 30, "sessions": [window("mon", "09:00", "12:00")]})
    await simulate(
        nc,
        ticks,
        {"s-broken": site, "s-fine": site},
        utc(2025, 6, 2, 7),
        utc(2025, 6, 2, 12),
        expect=6,
    )
    assert {t.tick.site_id for t in ticks.ticks} == {"s-fine"}
    assert len(ticks.ticks) == 6
