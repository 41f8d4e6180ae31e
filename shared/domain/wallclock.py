"""Local wall-clock time to UTC instants, with explicit rules for clock changes.

Rules (the whole domain uses these, so sessions, blackouts, closures, presets and quiet hours
agree with each other):

* A wall time that does not exist (it falls in a spring-forward gap) maps to the instant the
  gap ends, i.e. the instant of the clock change. This holds for starts and for ends alike.
* A wall time that exists twice (fall-back) maps to the EARLIER instant when it starts
  something and to the LATER instant when it ends something, so a window always covers its
  whole wall-clock span in real time.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

_SECOND = timedelta(seconds=1)


def resolve_tz(tz_name: str) -> ZoneInfo:
    """The IANA zone called `tz_name`; ValueError if the name is unknown."""
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown IANA time zone: {tz_name!r}") from exc


def require_utc(instant: datetime, name: str = "instant") -> datetime:
    """`instant` converted to UTC; ValueError if it is naive."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{name} must be a timezone-aware datetime")
    return instant.astimezone(UTC)


def offset_at(instant: datetime, tz: tzinfo) -> timedelta:
    """UTC offset of `tz` at the (aware) instant."""
    offset = instant.astimezone(tz).utcoffset()
    assert offset is not None  # an aware conversion always has an offset
    return offset


def transition_in(lo: datetime, hi: datetime, tz: tzinfo) -> datetime:
    """First instant in (lo, hi] whose offset differs from the offset at `lo`.

    The caller guarantees the offsets at `lo` and `hi` differ. Zone data has whole-second
    transitions, so a bisection on seconds is exact.
    """
    before = offset_at(lo, tz)
    low, high = lo, hi
    while high - low > _SECOND:
        mid = low + ((high - low) // 2 // _SECOND) * _SECOND
        if offset_at(mid, tz) == before:
            low = mid
        else:
            high = mid
    return high


def wall_to_utc(wall: datetime, tz: tzinfo, *, closing: bool = False) -> datetime:
    """The UTC instant of naive local `wall` time in `tz`, by the module's rules.

    `closing=False` resolves a repeated wall time to its earlier instant (for starts),
    `closing=True` to its later instant (for ends). A skipped wall time gives the instant the
    gap ends either way.
    """
    if wall.tzinfo is not None:
        raise ValueError("wall time must be naive")
    return wall_pair_to_utc(wall.replace(fold=0), wall.replace(fold=1), tz, closing)


def wall_pair_to_utc(first: datetime, second: datetime, tz: tzinfo, closing: bool) -> datetime:
    """`wall_to_utc` for a naive wall time given with fold=0 (`first`) and fold=1 (`second`).

    Hot loops build both readings with `datetime.combine` from times that carry their fold,
    which saves two `replace` calls per conversion.
    """
    before = tz.utcoffset(first)
    after = tz.utcoffset(second)
    assert before is not None
    assert after is not None
    if before == after:
        return (first - before).replace(tzinfo=UTC)
    if before > after:
        # Fall-back: fold=0 carries the larger (pre-change) offset, so it is the earlier one.
        return (first - (after if closing else before)).replace(tzinfo=UTC)
    # Spring-forward gap: the change happens somewhere in (wall - after, wall - before].
    low = (first - after).replace(tzinfo=UTC)
    high = (first - before).replace(tzinfo=UTC)
    return transition_in(low, high, tz)


def to_wall(instant: datetime, tz: tzinfo) -> datetime:
    """Naive local wall time of the aware `instant` in `tz`."""
    return instant.astimezone(tz).replace(tzinfo=None)
