"""Weekly windows (delivery sessions, blackouts) and closed dates of a site's settings.

Pure: no I/O.
"""

from __future__ import annotations

import hashlib

from pydantic import Field, field_validator, model_validator

from shared.domain.settings_fields import DAY_NAMES, HHMM, DayName, Strict, parse_hhmm
from shared.domain.weekly import DateClosure, Weekday, WeeklyWindow, overlaps


class Window(Strict):
    """A weekly window: delivery session or blackout. Immutable: delete and re-add to change."""

    days: list[DayName] = Field(min_length=1, description="Days it opens on, e.g. ['mon','tue'].")
    start: str = Field(description="Local opening time, HH:MM (24-hour).")
    end: str = Field(
        description="Local closing time, HH:MM. Earlier than or equal to start: closes the "
        "next day (overnight)."
    )

    @field_validator("days")
    @classmethod
    def _unique_days(cls, days: list[str]) -> list[str]:
        if len(set(days)) != len(days):
            raise ValueError("a day is listed twice")
        return sorted(days, key=DAY_NAMES.index)

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, value: str) -> str:
        if not HHMM.match(value):
            raise ValueError("must be a 24-hour time HH:MM, e.g. 09:00")
        return value

    @property
    def id(self) -> str:
        """Stable id from the content: sessions are never edited, so content identifies them."""
        raw = f"{','.join(self.days)}|{self.start}|{self.end}"
        return "w-" + hashlib.sha256(raw.encode()).hexdigest()[:10]

    def to_weekly(self) -> WeeklyWindow:
        """The domain window used by the time maths."""
        return WeeklyWindow(
            frozenset(Weekday(DAY_NAMES.index(d)) for d in self.days),
            parse_hhmm(self.start),
            parse_hhmm(self.end),
        )

    def describe(self) -> str:
        """Human text, e.g. 'Mon–Fri 09:00–12:00'."""
        return self.to_weekly().describe()


class Closure(Strict):
    """Whole local dates the site is closed (holidays), inclusive."""

    start: str = Field(description="First closed date, YYYY-MM-DD.")
    end: str = Field(description="Last closed date, YYYY-MM-DD.")
    label: str = Field(default="", max_length=100)

    @model_validator(mode="after")
    def _ordered(self) -> Closure:
        from datetime import date

        try:
            first, last = date.fromisoformat(self.start), date.fromisoformat(self.end)
        except ValueError as exc:
            raise ValueError("dates must be YYYY-MM-DD") from exc
        if last < first:
            raise ValueError("end is before start")
        return self

    def to_domain(self) -> DateClosure:
        """The domain closure."""
        from datetime import date

        return DateClosure(date.fromisoformat(self.start), date.fromisoformat(self.end))


def check_no_overlap(windows: list[Window], what: str) -> list[Window]:
    """Refuse a window listed twice or two that overlap; `what` names them in the error."""
    seen: set[str] = set()
    for i, first in enumerate(windows):
        if first.id in seen:
            raise ValueError(f"{what} {first.describe()} is listed twice")
        seen.add(first.id)
        for second in windows[i + 1 :]:
            if overlaps(first.to_weekly(), second.to_weekly()):
                raise ValueError(
                    f"{what}s overlap: {first.describe()} and {second.describe()}; "
                    "delete one or change its times"
                )
    return windows
