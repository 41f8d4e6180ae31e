"""View helpers: charts, batches, short descriptions. Pure functions, tested without a browser."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from shared.domain.numbers import for_field, for_people
from shared.domain.site_settings import Window

OUTBOX_STATES = ("queued", "sending", "sent", "failed", "suppressed", "cancelled", "expired")


def parse_time(value: Any) -> datetime | None:
    """An ISO timestamp (or None)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def short_time(value: Any) -> str:
    """'2026-03-02 14:05 UTC' from an ISO timestamp; the raw text if it is not one."""
    parsed = parse_time(value)
    if parsed is None:
        return str(value or "")
    return parsed.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def local_time(value: Any, tz: str) -> str:
    """'Thu 27 Nov 09:03 (Europe/London)' in the site's time zone; short_time if it fails."""
    parsed = parse_time(value)
    if parsed is None:
        return str(value or "")
    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        return short_time(value)
    return parsed.astimezone(zone).strftime("%a %d %b %Y %H:%M") + f" ({tz})"


def describe_window(window: Mapping[str, Any]) -> str:
    """'Mon–Fri 09:00–17:00' for a stored window."""
    try:
        return Window.model_validate(window).describe()
    except ValueError:
        return f"{','.join(window.get('days', []))} {window.get('start')}–{window.get('end')}"


def window_id(window: Mapping[str, Any]) -> str:
    """The stable id of a stored window (content-derived)."""
    return Window.model_validate(window).id


def show_value(value: Any, path: str = "") -> str:
    """A setting's value for people: windows described, lists joined, quantities with
    separators ("10,000"), a port as it is, '—' for nothing."""
    if value is None or value == []:
        return "—"
    if isinstance(value, list):
        if all(isinstance(v, Mapping) and "days" in v for v in value):
            return "; ".join(describe_window(v) for v in value)
        return ", ".join(str(v) for v in value)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        return setting_number(value, path)
    return str(value)


def setting_number(value: float, path: str) -> str:
    """A numeric setting for people: a quantity with separators and up to six decimals (a
    rate of 0.125 a second stays exact); a port is an identifier, shown as it is."""
    if path.rsplit(".", 1)[-1] == "port":
        return for_field(value)
    return for_people(value, places=6)


@dataclass(frozen=True)
class Chart:
    """An inline SVG polyline of balances over time."""

    points: str
    width: int
    height: int
    low: float
    high: float
    first: datetime
    last: datetime
    count: int
    threshold_y: float | None


def credit_chart(
    samples: Sequence[tuple[datetime, float]],
    threshold: float | None = None,
    width: int = 320,
    height: int = 90,
    pad: int = 4,
) -> Chart | None:
    """Scale (time, balance) samples into SVG coordinates; None without samples."""
    if not samples:
        return None
    ordered = sorted(samples, key=lambda s: s[0])
    first, last = ordered[0][0], ordered[-1][0]
    values = [v for _, v in ordered]
    low = min([*values, threshold]) if threshold is not None else min(values)
    high = max([*values, threshold]) if threshold is not None else max(values)
    span_t = (last - first).total_seconds() or 1.0
    span_v = (high - low) or 1.0
    inner_w, inner_h = width - 2 * pad, height - 2 * pad

    def y(value: float) -> float:
        return round(pad + inner_h - (value - low) / span_v * inner_h, 1)

    coords = []
    for index, (at, value) in enumerate(ordered):
        if len(ordered) == 1:
            x = pad + inner_w / 2
        else:
            x = pad + ((at - first).total_seconds() / span_t if span_t else index) * inner_w
        coords.append(f"{round(x, 1)},{y(value)}")
    if len(coords) == 1:  # a single report: a short flat line so it is visible
        y_text = coords[0].split(",")[1]
        coords = [f"{pad},{y_text}", f"{width - pad},{y_text}"]
    return Chart(
        points=" ".join(coords),
        width=width,
        height=height,
        low=low,
        high=high,
        first=first,
        last=last,
        count=len(ordered),
        threshold_y=y(threshold) if threshold is not None else None,
    )


@dataclass(frozen=True)
class Batch:
    """The latest submitted batch of a site and where it stands."""

    submitted_at: str
    total: int
    sent: int
    failed: int
    suppressed: int
    queued: int
    other: int

    @property
    def done(self) -> int:
        """Messages with an outcome."""
        return self.sent + self.failed + self.suppressed + self.other


def latest_batch(
    queued_events: Iterable[Mapping[str, Any]], states: Mapping[str, str | None]
) -> Batch | None:
    """The messages sharing the latest `submitted_at`, counted by their current state.

    `queued_events` are `stagger.dispatch.queued` records (each carries the submission time of
    its batch); `states` maps message ids to their state in the audit read model.
    """
    batches: dict[str, list[str]] = {}
    for event in queued_events:
        data = event.get("data") or {}
        if not isinstance(data, Mapping):
            continue
        stamp = data.get("submitted_at") or event.get("time")
        message_id = event.get("message_id") or data.get("message_id")
        if stamp and message_id:
            batches.setdefault(str(stamp), []).append(str(message_id))
    if not batches:
        return None
    stamp = max(batches, key=lambda s: parse_time(s) or datetime.min.replace(tzinfo=UTC))
    ids = set(batches[stamp])
    counts = {"sent": 0, "failed": 0, "suppressed": 0, "queued": 0, "other": 0}
    for message_id in ids:
        state = states.get(message_id) or "queued"
        counts[state if state in counts else "other"] += 1
    return Batch(submitted_at=stamp, total=len(ids), **counts)


def soft_bounce_rows(
    events: Iterable[dict[str, Any]], suppressed: Callable[[str], bool]
) -> list[dict[str, Any]]:
    """The latest soft-bounce count per address (newest first), with whether the address is
    on the suppression list now (the threshold reached, or another opt-out)."""
    rows = []
    for event in events:
        data = event.get("data") or {}
        recipient = str(data.get("recipient", ""))
        rows.append(
            {
                "recipient": recipient,
                "count": data.get("count"),
                "threshold": data.get("threshold"),
                "status": data.get("status"),
                "diagnostic": data.get("diagnostic"),
                "site_id": data.get("site_id") or event.get("siteid"),
                "time": event.get("time"),
                "suppressed": suppressed(recipient),
            }
        )
    rows.sort(key=lambda r: str(r["time"] or ""), reverse=True)
    return rows
