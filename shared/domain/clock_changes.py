"""Finding the instants at which a zone's UTC offset changes (DST and rule changes)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, tzinfo

from shared.domain.wallclock import offset_at, transition_in

# Offsets are sampled this far apart and each change is then bisected to the second. The
# closest pair of clock changes in tzdata 2025-2060 is 7 days apart (Asia/Gaza and Hebron,
# around Ramadan), so a 2-day step cannot step over a change and its reversal.
SAMPLE_STEP = timedelta(days=2)


@dataclass(frozen=True)
class ClockChange:
    """The UTC offset becomes `after` at `instant` (it was `before` just earlier)."""

    instant: datetime
    before: timedelta
    after: timedelta

    @property
    def wall(self) -> datetime:
        """Naive local wall time, on the old clock, at which the change happens."""
        return (self.instant + self.before).replace(tzinfo=None)


def clock_changes(tz: tzinfo, lo: datetime, hi: datetime) -> list[ClockChange]:
    """Offset changes of `tz` in (lo, hi], in order."""
    changes: list[ClockChange] = []
    previous, previous_offset = lo, offset_at(lo, tz)
    while previous < hi:
        current = min(previous + SAMPLE_STEP, hi)
        offset = offset_at(current, tz)
        if offset != previous_offset:
            instant = transition_in(previous, current, tz)
            changes.append(ClockChange(instant, previous_offset, offset_at(instant, tz)))
            # A second change inside one step would be missed; SAMPLE_STEP rules it out.
        previous, previous_offset = current, offset
    return changes
