"""A test-only time zone whose clock-change rule changes after a given year.

Real tzdata has no future rule change to test against, so this zone follows London's rule
(last Sunday of March and October, 01:00 UTC) up to `last_regular_year` and then either stops
changing clocks or changes them on the Monday after the last Sunday instead.
"""

from __future__ import annotations

import bisect
import calendar
from datetime import datetime, timedelta, tzinfo
from typing import Literal

_HOUR = timedelta(hours=1)
_ZERO = timedelta(0)


def _last_sunday(year: int, month: int) -> datetime:
    last = calendar.monthrange(year, month)[1]
    day = datetime(year, month, last)
    return day - timedelta(days=(day.weekday() - 6) % 7)


class RuleChangeZone(tzinfo):
    """GMT/BST on London's rule until `last_regular_year`, then `after` (PEP 495 folds)."""

    def __init__(self, last_regular_year: int, after: Literal["no-dst", "monday"]) -> None:
        self._instants: list[datetime] = []
        self._offsets: list[timedelta] = []
        for year in range(1990, 2100):
            if year > last_regular_year and after == "no-dst":
                break
            shift = timedelta(days=1) if year > last_regular_year else _ZERO
            for month, offset in ((3, _HOUR), (10, _ZERO)):
                self._instants.append(_last_sunday(year, month) + shift + _HOUR)  # 01:00 UTC
                self._offsets.append(offset)

    def _offset_at_utc(self, naive_utc: datetime) -> timedelta:
        index = bisect.bisect_right(self._instants, naive_utc) - 1
        return self._offsets[index] if index >= 0 else _ZERO

    def utcoffset(self, dt: datetime | None) -> timedelta | None:
        if dt is None:
            return None
        wall = dt.replace(tzinfo=None)
        valid = [o for o in (_HOUR, _ZERO) if self._offset_at_utc(wall - o) == o]
        if len(valid) == 2:  # repeated: fold 0 is the earlier reading (the larger offset)
            return valid[dt.fold]
        if valid:
            return valid[0]
        return _ZERO if dt.fold == 0 else _HOUR  # skipped: fold 0 keeps the offset before

    def dst(self, dt: datetime | None) -> timedelta | None:
        return self.utcoffset(dt)

    def tzname(self, dt: datetime | None) -> str:
        return "BST" if self.utcoffset(dt) == _HOUR else "GMT"

    def fromutc(self, dt: datetime) -> datetime:
        naive = dt.replace(tzinfo=None)
        offset = self._offset_at_utc(naive)
        wall = naive + offset
        later_reading = offset == _ZERO and self._offset_at_utc(wall - _HOUR) == _HOUR
        return wall.replace(tzinfo=self, fold=1 if later_reading else 0)
