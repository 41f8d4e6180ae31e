"""Independent checks of where a send may fall, written from the rules, not from the domain code.

A window's opening and closing wall times are turned into instants with `zoneinfo` directly:
a wall time in a spring-forward gap means the instant the gap ends; a repeated fall-back wall
time means the earlier instant for an opening and the later one for a closing (the rules in
docs/scheduler.md). An instant is inside a weekly window when it lies between the opening and
the closing of the window's occurrence on its local day or the day before (overnight windows).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def hhmm(value: str) -> time:
    hours, minutes = value.split(":")
    return time(int(hours), int(minutes))


def wall_instant(day: date, at: time, tz: ZoneInfo, *, closing: bool) -> datetime:
    """The UTC instant of a local wall time (see module docstring)."""
    wall = datetime.combine(day, at)
    earlier = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    later = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if earlier.astimezone(tz).replace(tzinfo=None) == wall:
        return later if closing else earlier
    # In a gap: fold=1 reads the wall time with the offset after the change, so it lands
    # before the change; walk forward to the minute the offset changes.
    probe = min(earlier, later)
    offset = probe.astimezone(tz).utcoffset()
    while probe.astimezone(tz).utcoffset() == offset:
        probe += timedelta(minutes=1)
    return probe


def in_window(instant: datetime, window: dict[str, Any], tz: ZoneInfo) -> bool:
    """True if the instant lies inside an occurrence of the weekly window."""
    start, end = hhmm(window["start"]), hhmm(window["end"])
    local_day = instant.astimezone(tz).date()
    for day in (local_day - timedelta(days=1), local_day):
        if DAYS[day.weekday()] not in window["days"]:
            continue
        opens = wall_instant(day, start, tz, closing=False)
        end_day = day + timedelta(days=1) if end <= start else day
        closes = wall_instant(end_day, end, tz, closing=True)
        if opens <= instant < closes:
            return True
    return False


def closed_on(instant: datetime, closures: Iterable[dict[str, Any]], tz: ZoneInfo) -> bool:
    """True if the instant's local date is a closed date."""
    local_day = instant.astimezone(tz).date()
    return any(
        date.fromisoformat(c["start"]) <= local_day <= date.fromisoformat(c["end"])
        for c in closures
    )


def in_quiet_hours(instant: datetime, quiet: dict[str, str], zone: str) -> bool:
    """True if the recipient's wall clock is inside the allowed hours [start, end)."""
    wall = instant.astimezone(ZoneInfo(zone)).time()
    return hhmm(quiet["start"]) <= wall < hhmm(quiet["end"])


def send_problems(
    instant: datetime,
    *,
    zone: str,
    sessions: list[dict[str, Any]] | None,
    blackouts: list[dict[str, Any]],
    closures: list[dict[str, Any]],
) -> list[str]:
    """Why a send at `instant` breaks its site's schedule (sessions None: not bound by them)."""
    tz = ZoneInfo(zone)
    problems = []
    if sessions is not None:
        if not any(in_window(instant, w, tz) for w in sessions):
            problems.append("outside every session")
        if closed_on(instant, closures, tz):
            problems.append("on a closed date")
    if any(in_window(instant, w, tz) for w in blackouts):
        problems.append("inside a blackout")
    return problems
