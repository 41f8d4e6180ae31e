"""From a site's settings to the pure forecast: which schedule and pace apply to a channel."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from typing import Any, Literal

from shared.domain.forecast import Forecast, forecast
from shared.domain.schedule import ImmediatePace, Pace, RatePace, Schedule, StaggerPace
from shared.domain.site_settings import SiteSettings
from shared.domain.ticks import grid_offset
from shared.domain.weekly import Weekday, WeeklyWindow

Channel = Literal["sms", "email"]
ALWAYS = WeeklyWindow(frozenset(Weekday), time(0, 0), time(0, 0))


def plan(
    settings: SiteSettings, channel: Channel, site_id: str | None = None
) -> tuple[Schedule, Pace, str | None]:
    """(schedule, pace, note) for a channel; the note explains modes without automatic sends.

    With `site_id`, interval grids (staggered SMS, email cycles and their rate) carry the
    site's grid offset (`shared.domain.ticks.grid_offset`), exactly as the scheduler ticks them;
    without it the grids start where each open interval opens.
    """
    blackouts = tuple(w.to_weekly() for w in settings.blackouts)
    if channel == "sms":
        sms = settings.sms
        if sms.mode == "immediate":
            # "Send all SMS when the list is generated": no sessions, the provider's rate.
            schedule = Schedule((ALWAYS,), blackouts, (), settings.profile.timezone)
            return schedule, RatePace(sms.provider.rate_per_second * 60), None
        every = timedelta(minutes=sms.every_minutes)
        pace = StaggerPace(every, offset=site_grid_offset(site_id, "sms", every))
        return settings.schedule("sms"), pace, None
    email = settings.email
    limits = email.hard_limits()
    rate = email.per_minute or None
    if limits["per_minute"] is not None:
        rate = min(rate, limits["per_minute"]) if rate else float(limits["per_minute"])
    # Preset times are exact wall times the site chose: no offset. Otherwise the rate's grid
    # shares the cycles' offset, so each cycle's budget counts the slots the forecast counts.
    offset = (
        timedelta(0)
        if email.preset_times
        else site_grid_offset(site_id, "email", timedelta(minutes=email.check_every_minutes))
    )
    email_pace: Pace = RatePace(rate, limits["per_day"], offset) if rate else ImmediatePace()
    note = None
    if email.mode == "manual":
        note = "manual mode: nothing is sent until someone presses send-now"
    return settings.schedule("email"), email_pace, note


def grid_key(site_id: str, channel: Channel) -> str:
    """What a site's grid offset is derived from (one offset per site and channel)."""
    return f"{site_id}|{channel}"


def site_grid_offset(site_id: str | None, channel: Channel, every: timedelta) -> timedelta:
    """The offset of a site's grid of `every` on a channel (0 without a site id)."""
    return timedelta(0) if site_id is None else grid_offset(grid_key(site_id, channel), every)


def site_forecast(
    settings: SiteSettings,
    channel: Channel,
    new: int,
    queued: int = 0,
    horizon_days: int = 7,
    start: datetime | None = None,
    site_id: str | None = None,
) -> dict[str, Any]:
    """The forecast of sending `new` messages after `queued` ones, as JSON-ready data.

    Pass the site's id: its grids are offset inside the interval (see `plan`).
    """
    schedule, pace, note = plan(settings, channel, site_id)
    warn_after = settings.sms.warn_after_days if channel == "sms" else None
    result: Forecast = forecast(
        schedule,
        pace,
        start or datetime.now(UTC),
        queued=queued,
        new=new,
        horizon_days=horizon_days,
        warn_after_days=warn_after,
    )
    fits = result.fit_within_horizon
    summary = f"{fits} of {new} messages can be sent in the next {horizon_days} days"
    return {
        "channel": channel,
        "mode": settings.sms.mode if channel == "sms" else settings.email.mode,
        "new": new,
        "queued": queued,
        "horizon_days": horizon_days,
        "first_send": _iso(result.first_send),
        "last_send": _iso(result.last_send),
        "fit_within_horizon": fits,
        "capacity_per_week": result.capacity_per_week,
        "sends_per_day": result.sends_per_day,
        "session_minutes_needed": result.session_minutes_needed,
        "too_long": result.too_long,
        "warning": result.warning,
        "summary": summary,
        "note": note,
        "explanation": list(result.explanation),
    }


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
