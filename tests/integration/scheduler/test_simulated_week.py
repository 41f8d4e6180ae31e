"""The real timer on simulated time against the real NATS server: a week, and DST weeks."""

from __future__ import annotations

import itertools
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from nats.aio.client import Client

from shared.bus import subjects
from shared.domain.forecast import capacity_between
from shared.domain.planning import plan
from shared.domain.site_settings import SiteSettings
from shared.domain.ticks import tick_id
from tests.integration.scheduler.support import (
    TickReader,
    offset_of,
    settings,
    sim_scheduler,
    utc,
    window,
)

LONDON = ZoneInfo("Europe/London")
MIN = timedelta(minutes=1)


async def test_staggered_sms_week_matches_sessions_and_forecast(
    nc: Client, ticks: TickReader
) -> None:
    site = settings(
        sms={
            "mode": "staggered",
            "every_minutes": 20,
            "sessions": [window("mon-fri", "09:00", "12:00"), window("mon-fri", "13:00", "17:00")],
        }
    )
    monday = utc(2025, 6, 2)  # local Monday 01:00 BST; the week runs Mon 2 to Mon 9 June
    week_start, week_end = monday - timedelta(hours=1), utc(2025, 6, 8, 23)
    # By hand: each weekday 09:00, 09:20, ... 11:40 and 13:00, ... 16:40 local (UTC+1), each
    # moved by the site's grid offset (under a minute).
    offset = offset_of("s-week", "sms", 20 * MIN)
    expected = []
    for day in range(2, 7):
        for hour, count in ((9, 9), (13, 12)):
            first = datetime.combine(date(2025, 6, day), time(hour), LONDON) + offset
            expected += [(first + k * 20 * MIN).astimezone(monday.tzinfo) for k in range(count)]
    assert len(expected) == 105

    reader = ticks
    async with sim_scheduler(nc, week_start) as sim:
        sim.set_site("s-week", site)
        sim.start()
        await sim.run_until(week_end)
        await reader.until(lambda ticks: len(ticks) >= 105, message="a week of ticks")
        await reader.poll()

    ticks = reader.of("s-week")
    assert [t.tick.scheduled_at for t in ticks] == expected
    schedule, pace, _ = plan(site, "sms", "s-week")
    assert len(ticks) == capacity_between(schedule, pace, week_start, week_end) == 105
    for read in ticks:
        tick = read.tick
        local = tick.scheduled_at.astimezone(LONDON).time()
        assert time(9) <= local < time(12) or time(13) <= local < time(17)
        assert read.subject == subjects.tick_site("sms", "s-week")
        assert tick.tick_id == read.envelope.id == tick_id("s-week", "sms", tick.scheduled_at)
        assert (tick.budget, tick.spacing_seconds, tick.scope, tick.manual) == (
            1,
            0.0,
            "site",
            False,
        )
        assert tick.not_before == tick.scheduled_at
        closes = time(12) if local < time(12) else time(17)
        session_end = datetime.combine(tick.scheduled_at.astimezone(LONDON).date(), closes, LONDON)
        assert tick.not_after == min(tick.scheduled_at + 20 * MIN, session_end)
        assert tick.account.startswith("sms-")
        assert tick.reason == (
            "staggered SMS: 1 every 20 min inside Mon\u2013Fri 09:00\u201312:00, "
            "Mon\u2013Fri 13:00\u201317:00 (Europe/London)"
        )


async def run_sim(
    nc: Client,  # returns the instants on the plain grid (the site's offset taken off)
    reader: TickReader,
    site_id: str,
    site: SiteSettings,
    start: datetime,
    end: datetime,
    expected_count: int,
) -> list[datetime]:
    async with sim_scheduler(nc, start) as sim:
        sim.set_site(site_id, site)
        sim.start()
        await sim.run_until(end)
        await reader.until(lambda ticks: len(ticks) >= expected_count, message="DST ticks")
        await reader.poll()
    instants = [t.tick.scheduled_at for t in reader.of(site_id)]
    assert len(set(instants)) == len(instants), "a tick was issued twice"
    # Every instant carries the site's grid offset (under a minute: the walls below hold).
    offset = offset_of(site_id, "sms", 30 * MIN)
    return [instant - offset for instant in instants]


def sunday_and_weekdays(timezone: str) -> SiteSettings:
    return settings(
        timezone=timezone,
        sms={
            "every_minutes": 30,
            "sessions": [window("sun", "00:00", "04:00"), window("mon-fri", "09:00", "10:00")],
        },
    )


async def test_london_spring_forward_week(nc: Client, ticks: TickReader) -> None:
    site = sunday_and_weekdays("Europe/London")
    # Sun 30 Mar 2025: 01:00 GMT -> 02:00 BST. The session 00:00-04:00 local lasts 3 real hours.
    expected = [
        utc(2025, 3, 28, 9),
        utc(2025, 3, 28, 9, 30),  # Fri, GMT
        utc(2025, 3, 30, 0),
        utc(2025, 3, 30, 0, 30),  # 00:00, 00:30 GMT
        utc(2025, 3, 30, 1),
        utc(2025, 3, 30, 1, 30),  # 02:00, 02:30 BST: 01:xx never exists
        utc(2025, 3, 30, 2),
        utc(2025, 3, 30, 2, 30),  # 03:00, 03:30 BST
        utc(2025, 3, 31, 8),
        utc(2025, 3, 31, 8, 30),  # Mon 09:00 BST
        utc(2025, 4, 1, 8),
        utc(2025, 4, 1, 8, 30),  # Tue
    ]
    got = await run_sim(nc, ticks, "s-ldn-spring", site, utc(2025, 3, 28), utc(2025, 4, 1, 12), 12)
    assert got == expected
    for instant in got:
        assert instant.astimezone(LONDON).hour != 1 or instant.day != 30


async def test_london_fall_back_week(nc: Client, ticks: TickReader) -> None:
    site = sunday_and_weekdays("Europe/London")
    # Sun 26 Oct 2025: 02:00 BST -> 01:00 GMT. 00:00 BST to 04:00 GMT is 5 real hours, ticked
    # every 30 real minutes: the repeated hour is paced, not ticked twice at once.
    expected = [
        utc(2025, 10, 24, 8),
        utc(2025, 10, 24, 8, 30),  # Fri 09:00 BST
        *[utc(2025, 10, 25, 23) + k * 30 * MIN for k in range(10)],  # Sat 23:00Z .. Sun 03:30Z
        utc(2025, 10, 27, 9),
        utc(2025, 10, 27, 9, 30),  # Mon 09:00 GMT
        utc(2025, 10, 28, 9),
        utc(2025, 10, 28, 9, 30),
    ]
    got = await run_sim(nc, ticks, "s-ldn-fall", site, utc(2025, 10, 24), utc(2025, 10, 28, 12), 16)
    assert got == expected
    sunday = got[2:12]
    assert all(b - a == 30 * MIN for a, b in itertools.pairwise(sunday))
    walls = [t.astimezone(LONDON).strftime("%H:%M %Z") for t in sunday]
    assert walls[2:6] == ["01:00 BST", "01:30 BST", "01:00 GMT", "01:30 GMT"]


async def test_sydney_fall_back_week(nc: Client, ticks: TickReader) -> None:
    site = sunday_and_weekdays("Australia/Sydney")
    # Sun 6 Apr 2025: 03:00 AEDT (UTC+11) -> 02:00 AEST (UTC+10).
    # Session 00:00 AEDT (Sat 13:00Z) to 04:00 AEST (Sat 18:00Z): 5 real hours.
    expected = [
        utc(2025, 4, 3, 22),
        utc(2025, 4, 3, 22, 30),  # Fri 4 Apr 09:00 AEDT
        *[utc(2025, 4, 5, 13) + k * 30 * MIN for k in range(10)],
        utc(2025, 4, 6, 23),
        utc(2025, 4, 6, 23, 30),  # Mon 7 Apr 09:00 AEST
    ]
    got = await run_sim(nc, ticks, "s-syd-fall", site, utc(2025, 4, 3), utc(2025, 4, 7, 12), 14)
    assert got == expected


async def test_sydney_spring_forward_week(nc: Client, ticks: TickReader) -> None:
    site = sunday_and_weekdays("Australia/Sydney")
    # Sun 5 Oct 2025: 02:00 AEST (UTC+10) -> 03:00 AEDT (UTC+11).
    # Session 00:00 AEST (Sat 14:00Z) to 04:00 AEDT (Sat 17:00Z): 3 real hours, 02:xx skipped.
    expected = [
        utc(2025, 10, 2, 23),
        utc(2025, 10, 2, 23, 30),  # Fri 3 Oct 09:00 AEST
        *[utc(2025, 10, 4, 14) + k * 30 * MIN for k in range(6)],
        utc(2025, 10, 5, 22),
        utc(2025, 10, 5, 22, 30),  # Mon 6 Oct 09:00 AEDT
    ]
    got = await run_sim(nc, ticks, "s-syd-spring", site, utc(2025, 10, 2), utc(2025, 10, 6, 12), 10)
    assert got == expected
    sydney = ZoneInfo("Australia/Sydney")
    assert not any(t.astimezone(sydney).hour == 2 and t.astimezone(sydney).day == 5 for t in got)
