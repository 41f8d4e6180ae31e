"""A site's sending status for the group dashboard: is a session open, when is the next, and
one line saying what is happening. Pure: the caller brings the schedule, counts and holds."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from shared.domain.numbers import for_people
from shared.domain.open_time import iter_open_intervals
from shared.domain.schedule import Schedule

HORIZON = timedelta(days=400)


@dataclass(frozen=True)
class SessionStatus:
    """Whether a session is open at `now`, until when, and when the next one opens."""

    open_now: bool
    until: datetime | None
    next_open: datetime | None


def session_status(schedule: Schedule, now: datetime) -> SessionStatus:
    """The session open at `now` (and its end) or the next one to open (None: none within
    about a year, e.g. no sessions at all)."""
    intervals = iter_open_intervals(
        schedule.sessions, schedule.blackouts, schedule.closures, schedule.tz_name, now
    )
    for begin, end in intervals:
        if begin > now + HORIZON:
            break
        if begin <= now < end:
            return SessionStatus(True, end, None)
        if begin > now:
            return SessionStatus(False, None, begin)
    return SessionStatus(False, None, None)


def status_line(waiting: int | None, held: str | None, session: SessionStatus) -> str:
    """What a person needs to know first: held (and why), sending, waiting or idle."""
    if held:
        return f"Held: {held}"
    if waiting is None:
        return "Unknown: the gateway did not answer"
    if waiting == 0:
        return "Nothing waiting"
    if session.open_now:
        return f"Sending now ({for_people(waiting)} waiting)"
    return f"{for_people(waiting)} waiting for the next session"
