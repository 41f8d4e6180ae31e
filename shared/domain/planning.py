"""From a site's settings to the pure forecast: which schedule and pace apply to a channel."""

from __future__ import annotations

from datetime import UTC, datetime, time
from typing import Any, Literal

from shared.domain.forecast import Forecast, forecast
from shared.domain.schedule import ImmediatePace, Pace, RatePace, Schedule, StaggerPace
from shared.domain.site_settings import SiteSettings
from shared.domain.weekly import Weekday, WeeklyWindow

Channel = Literal["sms", "email"]
ALWAYS = WeeklyWindow(frozenset(Weekday), time(0, 0), time(0, 0))


def plan(settings: SiteSettings, channel: Channel) -> tuple[Schedule, Pace, str | None]:
    """(schedule, pace, note) for a channel; the note explains modes without automatic sends."""
    blackouts = tuple(w.to_weekly() for w in settings.blackouts)
    if channel == "sms":
        sms = settings.sms
        if sms.mode == "immediate":
            # "Send all SMS when the list is generated": no sessions, the provider's rate.
            schedule = Schedule((ALWAYS,), blackouts, (), settings.profile.timezone)
            return schedule, RatePace(sms.provider.rate_per_second * 60), None
        from datetime import timedelta

        pace = StaggerPace(timedelta(minutes=sms.every_minutes))
        return settings.schedule("sms"), pace, None
    email = settings.email
    limits = email.hard_limits()
    rate = email.per_minute or None
    if limits["per_minute"] is not None:
        rate = min(rate, limits["per_minute"]) if rate else float(limits["per_minute"])
    email_pace: Pace = RatePace(rate, limits["per_day"]) if rate else ImmediatePace()
    note = None
    if email.mode == "manual":
        note = "manual mode: nothing is sent until someone presses send-now"
    return settings.schedule("email"), email_pace, note


def site_forecast(
    settings: SiteSettings,
    channel: Channel,
    new: int,
    queued: int = 0,
    horizon_days: int = 7,
    start: datetime | None = None,
) -> dict[str, Any]:
    """The forecast of sending `new` messages after `queued` ones, as JSON-ready data."""
    schedule, pace, note = plan(settings, channel)
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
