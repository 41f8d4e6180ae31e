"""What the scheduler ticks for a site, and when: plans and their tick grids. Pure, no I/O.

Settings map to a schedule and a pace exactly as the forecast maps them
(`shared.domain.planning.plan`), and instants come from the shared time maths
(`shared.domain.open_time.WeeklyCalendar` for open intervals, `shared.domain.ticks` for grids
anchored where each interval opens, `preset_tick_instants` for preset times), so ticks and
forecasts cannot disagree. The cursors here only add what a long-running timer needs: "the
first slot at or after this instant", the end of the interval holding it (to bound
`not_after`), and a cache of open intervals that stays small however long the process runs.

* SMS staggered: one tick every `every_minutes` inside the SMS sessions (minus blackouts and
  closures), budget 1, no spacing; usable until the next tick or the session's end.
* SMS immediate: the site joins its provider account's ticks (see `account_slot`), which run
  at the account's rate whatever the sessions; a site inside a blackout is left out.
* Email automatic: a send/receive cycle every `check_every_minutes` (or at each preset time)
  inside the email sessions; the cycle may send one email every 60/per-minute seconds until
  the next cycle or the session's end, never more than the daily cap.
* Email manual, a disabled channel, SMS provider "none", no SMTP server: no automatic ticks.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from functools import lru_cache
from typing import Literal

from shared.domain.accounts import email_account_id, sms_account_id
from shared.domain.open_time import Interval, WeeklyCalendar, week_of_date
from shared.domain.planning import ALWAYS, plan, site_grid_offset
from shared.domain.schedule import ImmediatePace, RatePace, Schedule, StaggerPace
from shared.domain.site_settings import SiteSettings, parse_hhmm
from shared.domain.ticks import (
    count_grid_ticks,
    count_interval_ticks,
    first_grid_index,
    grid_anchor,
    preset_tick_instants,
)
from shared.domain.wallclock import to_wall

Channel = Literal["sms", "email"]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MICROSECOND = timedelta(microseconds=1)
WEEK = timedelta(days=7)
SCAN_WEEKS = 106
"""How far (about two years) a cursor looks for the next open slot before parking the schedule
until then; only very long closures get that far."""
UNCAPPED_EMAIL_BUDGET = 10_000
"""Budget of an email cycle with no delay and no daily cap."""


# --- Open time, a week at a time --------------------------------------------------------------


class OpenTime:
    """A schedule's open intervals, computed a local week at a time.

    Equal schedules share one instance (`open_time`). The calendar behind it is replaced
    whenever a handful of weeks are cached, so a process that runs for years holds only the
    weeks it is ticking through.
    """

    MAX_CACHED_WEEKS = 8

    def __init__(self, schedule: Schedule) -> None:
        self.schedule = schedule
        self.tz = schedule.tz
        self._calendar = WeeklyCalendar(
            schedule.sessions, schedule.blackouts, schedule.closures, self.tz
        )
        self.has_open_time = self._calendar.has_open_time
        self._weeks: dict[int, tuple[Interval, ...]] = {}

    def week_of(self, instant: datetime) -> int:
        """Number of the local week holding `instant`."""
        return week_of_date(to_wall(instant, self.tz).date())

    def week(self, number: int) -> tuple[Interval, ...]:
        """Open intervals of local week `number` (sorted, disjoint, inside the week)."""
        found = self._weeks.get(number)
        if found is None:
            if len(self._weeks) >= self.MAX_CACHED_WEEKS:
                self._weeks.clear()
                self._calendar = WeeklyCalendar(
                    self.schedule.sessions,
                    self.schedule.blackouts,
                    self.schedule.closures,
                    self.tz,
                )
            found = self._calendar.week_intervals(number)
            self._weeks[number] = found
        return found

    def week_start(self, number: int) -> datetime:
        """UTC instant of local Monday 00:00 starting week `number`."""
        return self._calendar.week_start(number)

    def interval_at(self, instant: datetime) -> Interval | None:
        """The open interval holding `instant`, or None when it is closed time."""
        for start, end in self.week(self.week_of(instant)):
            if start <= instant < end:
                return start, end
        return None


@lru_cache(maxsize=4096)
def open_time(schedule: Schedule) -> OpenTime:
    """The shared `OpenTime` of a schedule (sites with equal settings share one)."""
    return OpenTime(schedule)


# --- Slots ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Slot:
    """One tick: its instant, and the instant after which it may no longer be used."""

    instant: datetime
    not_after: datetime
    anchor: datetime | None = None
    """Where the open interval holding the slot opens: the rate grid of an email cycle
    starts there, as the forecast's does (None: count from `instant`)."""


@dataclass(frozen=True, slots=True)
class Recheck:
    """No slot before `at` (a long closure): look again from there."""

    at: datetime


def next_interval_slot(
    ot: OpenTime, every: timedelta, at: datetime, offset: timedelta = timedelta(0)
) -> Slot | Recheck | None:
    """The first interval tick at or after `at` (None: the schedule never opens).

    Same instants as `shared.domain.ticks.session_tick_instants`: a grid `every` apart anchored
    `offset` after each open interval opens. `not_after` is the next tick or the interval's
    end; the slot's anchor is where the grid starts (the email rate's grid starts there too).
    """
    if not ot.has_open_time:
        return None
    week = ot.week_of(at)
    for number in range(week, week + SCAN_WEEKS):
        for start, end in ot.week(number):
            anchor = grid_anchor(start, end, offset)
            if end <= at or anchor is None:
                continue
            instant = anchor + first_grid_index(anchor, at, every) * every
            if instant < end:
                return Slot(instant, min(instant + every, end), anchor)
    return Recheck(ot.week_start(week + SCAN_WEEKS))


def next_preset_slot(
    presets: tuple[time, ...], schedule: Schedule, at: datetime
) -> Slot | Recheck | None:
    """The first preset tick at or after `at` (`preset_tick_instants`' rules).

    `not_after` is the next preset tick or the end of the open time holding this one,
    whichever comes first.
    """
    # preset_tick_instants fires inside the sessions, or every day when there are none.
    opened = open_time(
        Schedule(
            schedule.sessions or (ALWAYS,),
            schedule.blackouts,
            schedule.closures,
            schedule.tz_name,
        )
    )
    if not presets or not opened.has_open_time:
        return None
    lo = at
    found: list[datetime] = []
    for _ in range(SCAN_WEEKS):
        found = _presets(presets, schedule, lo, lo + WEEK)
        if found:
            break
        lo += WEEK
    if not found:
        return Recheck(lo)
    instant = found[0]
    later = found[1] if len(found) > 1 else None
    if later is None:
        following = _presets(presets, schedule, instant + MICROSECOND, instant + WEEK)
        later = following[0] if following else None
    interval = opened.interval_at(instant)
    closes = interval[1] if interval else instant + MICROSECOND
    return Slot(instant, min(later, closes) if later else closes)


def _presets(
    presets: tuple[time, ...], schedule: Schedule, lo: datetime, hi: datetime
) -> list[datetime]:
    return preset_tick_instants(
        presets, schedule.sessions, schedule.blackouts, schedule.closures, schedule.tz_name, lo, hi
    )


def next_open_instant(ot: OpenTime, at: datetime) -> datetime | None:
    """`at` if it is open time, else the start of the next open interval (None: never)."""
    if not ot.has_open_time:
        return None
    week = ot.week_of(at)
    for number in range(week, week + SCAN_WEEKS):
        for start, end in ot.week(number):
            if end > at:
                return max(start, at)
    return None


def outside_blackouts(settings: SiteSettings) -> Schedule:
    """Every day minus the site's blackouts: when immediate and manual sending may happen.

    The same schedule the forecast uses for immediate SMS (closures do not stop it).
    """
    blackouts = tuple(w.to_weekly() for w in settings.blackouts)
    return Schedule((ALWAYS,), blackouts, (), settings.profile.timezone)


def account_slot(period: timedelta, at: datetime) -> Slot:
    """The first account tick at or after `at`: a grid `period` apart from the Unix epoch.

    Anchoring on the epoch (not on when a process started) gives every replica the same
    instants, hence the same tick ids.
    """
    step = period // MICROSECOND
    elapsed = (at - EPOCH) // MICROSECOND
    instant = EPOCH + MICROSECOND * (-(-elapsed // step) * step)
    return Slot(instant, instant + period)


# --- Plans ------------------------------------------------------------------------------------


def duration_text(delta: timedelta) -> str:
    """'3 min', '90 s', '0.25 s'."""
    seconds = delta.total_seconds()
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"


def where_text(schedule: Schedule) -> str:
    """'inside Mon–Fri 09:00–17:00 (Europe/London); not in blackout Mon 12:00–13:00'."""
    sessions = ", ".join(w.describe() for w in schedule.sessions)
    text = f"inside {sessions}" if sessions else "every day"
    text += f" ({schedule.tz_name})"
    if schedule.blackouts:
        text += "; not in blackout " + ", ".join(w.describe() for w in schedule.blackouts)
    if schedule.closures:
        text += f"; closed {len(schedule.closures)} date range(s)"
    return text


@dataclass(frozen=True)
class SitePlan:
    """Automatic ticks of one site and channel (staggered SMS or email cycles)."""

    site_id: str
    group_id: str
    channel: Channel
    account: str
    schedule: Schedule
    every: timedelta | None
    presets: tuple[time, ...] = ()
    step: timedelta | None = None
    daily_cap: int | None = None
    fixed_budget: int | None = None
    receive: bool = False
    reason: str = ""
    offset: timedelta = timedelta(0)
    """How far after each open interval opens its grid starts (`shared.domain.ticks`)."""

    @property
    def spacing_seconds(self) -> float:
        """Seconds between two messages released by one tick."""
        return self.step.total_seconds() if self.step else 0.0

    def next_slot(self, at: datetime) -> Slot | Recheck | None:
        """The first tick at or after `at`."""
        if self.every is not None:
            return next_interval_slot(open_time(self.schedule), self.every, at, self.offset)
        return next_preset_slot(self.presets, self.schedule, at)

    def budget(self, slot: Slot) -> int:
        """Messages one tick may release: what the pace fits before `not_after`, within caps."""
        if self.fixed_budget is not None:
            return self.fixed_budget
        assert self.step is not None
        if slot.anchor is not None:
            # The rate's slots run on one grid from where the interval opens, across cycles;
            # counted from each cycle instead, a cycle that is not a whole number of steps
            # would get an extra slot (every 5 min at one per 2 min: 3 + 3 instead of 5 per
            # 10 min), sending faster than the rate and more than the forecast says. A cycle
            # holding no slot of the grid still ticks (the mailbox is read), with budget 0.
            count = count_grid_ticks(slot.anchor, slot.instant, slot.not_after, self.step)
            return count if self.daily_cap is None else min(count, self.daily_cap)
        count = count_interval_ticks(slot.instant, slot.not_after, self.step)
        if self.daily_cap is not None:
            count = min(count, self.daily_cap)
        return max(1, count)


@dataclass(frozen=True)
class AccountMember:
    """A site in immediate SMS mode, sending through a shared provider account."""

    site_id: str
    group_id: str
    rate_per_second: float
    blackouts: Schedule
    """Open time of immediate sending: every day minus the site's blackouts (as the forecast)."""

    def available(self, instant: datetime) -> bool:
        """False while the site is inside a blackout."""
        return open_time(self.blackouts).interval_at(instant) is not None


@dataclass(frozen=True)
class AccountTerms:
    """What one account tick allows: which sites, how many messages, how far apart."""

    sites: tuple[str, ...]
    group_id: str | None
    budget: int
    spacing_seconds: float
    reason: str


def account_terms(
    account: str, members: Iterable[AccountMember], instant: datetime, period: timedelta
) -> AccountTerms | None:
    """The terms of the account's tick at `instant`, or None when every site is in a blackout.

    Sites sharing one account share its rate: the tick carries what the account allows in one
    period (at least one message), one message every 1/rate seconds. If the sites' settings
    disagree about the account's rate, the lowest one holds.
    """
    everyone = sorted(members, key=lambda m: m.site_id)
    if not everyone:
        return None
    sending = tuple(m.site_id for m in everyone if m.available(instant))
    if not sending:
        return None
    rate = min(m.rate_per_second for m in everyone)
    seconds = period.total_seconds()
    budget = max(1, round(rate * seconds))
    groups = {m.group_id for m in everyone}
    reason = (
        f"immediate SMS: account {account} sends up to {rate:g}/s, {budget} per "
        f"{duration_text(period)} tick, shared by {len(everyone)} site(s); "
        f"{len(everyone) - len(sending)} in a blackout now"
    )
    return AccountTerms(
        sending, groups.pop() if len(groups) == 1 else None, budget, 1.0 / rate, reason
    )


@dataclass(frozen=True)
class SitePlans:
    """Everything one site's settings ask of the scheduler."""

    site_id: str
    group_id: str
    sms: SitePlan | None
    email: SitePlan | None
    sms_account: tuple[str, AccountMember] | None
    notes: tuple[str, ...] = ()

    def plan(self, channel: Channel) -> SitePlan | None:
        """The automatic plan of one channel."""
        return self.sms if channel == "sms" else self.email


def plan_site(site_id: str, group_id: str, settings: SiteSettings) -> SitePlans:
    """Turn a site's effective settings into the scheduler's plans (see module docstring)."""
    notes: list[str] = []
    sms_plan, member = _sms(site_id, group_id, settings, notes)
    email_plan = _email(site_id, group_id, settings, notes)
    return SitePlans(site_id, group_id, sms_plan, email_plan, member, tuple(notes))


def _sms(
    site_id: str, group_id: str, settings: SiteSettings, notes: list[str]
) -> tuple[SitePlan | None, tuple[str, AccountMember] | None]:
    account = sms_account_id(settings.sms.provider, group_id)
    if account is None:
        notes.append("sms: provider 'none': no SMS ticks")
        return None, None
    schedule, pace, _ = plan(settings, "sms", site_id)
    if settings.sms.mode == "immediate":
        assert isinstance(pace, RatePace)
        member = AccountMember(site_id, group_id, settings.sms.provider.rate_per_second, schedule)
        return None, (account, member)
    assert isinstance(pace, StaggerPace)
    sms_plan = SitePlan(
        site_id=site_id,
        group_id=group_id,
        channel="sms",
        account=account,
        schedule=schedule,
        every=pace.every,
        fixed_budget=pace.per_tick,
        reason=f"staggered SMS: {pace.per_tick} every {duration_text(pace.every)} "
        f"{where_text(schedule)}",
        offset=pace.offset,
    )
    return sms_plan, None


def _email(
    site_id: str, group_id: str, settings: SiteSettings, notes: list[str]
) -> SitePlan | None:
    email = settings.email
    account = email_account_id(email, group_id)
    if not email.enabled:
        notes.append("email: disabled: no email ticks")
        return None
    if account is None:
        notes.append("email: no SMTP server: no email ticks")
        return None
    if email.mode == "manual":
        notes.append("email: manual mode: ticks only on send-now")
        return None
    schedule, pace, _ = plan(settings, "email", site_id)
    presets = tuple(parse_hhmm(p) for p in email.preset_times)
    every = None if presets else timedelta(minutes=email.check_every_minutes)
    if every is None:
        when = f"at {', '.join(email.preset_times)}"
    else:
        when = f"every {duration_text(every)}"
    if isinstance(pace, RatePace):
        step: timedelta | None = pace.step
        cap = pace.daily_cap
        fixed = None
        rate = f"{pace.per_minute:g} a minute (one every {duration_text(pace.step)})"
        if cap is not None:
            rate += f", at most {cap} a day"
    else:
        assert isinstance(pace, ImmediatePace)
        step, cap = None, None
        fixed = email.hard_limits()["per_day"] or UNCAPPED_EMAIL_BUDGET
        rate = f"no delay, up to {fixed} per cycle"
    where = where_text(schedule)
    return SitePlan(
        site_id=site_id,
        group_id=group_id,
        channel="email",
        account=account,
        schedule=schedule,
        every=every,
        presets=presets,
        step=step,
        daily_cap=cap,
        fixed_budget=fixed,
        receive=True,
        reason=f"email send/receive cycle {when} {where}: {rate}",
        offset=timedelta(0) if every is None else site_grid_offset(site_id, "email", every),
    )
