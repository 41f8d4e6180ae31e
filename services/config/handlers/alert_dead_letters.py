"""Dead-letter alerts clear themselves once the consumer has been quiet.

A dead letter is a message set aside, not a state that later reports its own end, so the
condition "messages could not be processed" is taken to have ended when the consumer has
set nothing of the group's aside for `quiet` (`STAGGER_ALERT_DEAD_LETTER_QUIET_HOURS`, 24 h by
default): the admins are told "cleared", and the next dead letter raises a new alert. The dead
letters themselves stay on the DEADLETTER stream (90 days) for an operator to inspect.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from services.config.adapters.alerts import AlertStore
from services.config.domain.alerts import Clear, Signal

QUIET = timedelta(hours=24)


class DeadLetterQuiet:
    """Clears the dead-letter alerts whose newest dead letter is older than `quiet`."""

    def __init__(self, alerts: AlertStore, quiet: timedelta = QUIET) -> None:
        self.alerts = alerts
        self.quiet = quiet

    async def check(self, now: datetime | None = None) -> bool:
        """One pass at `now` (default: the clock); True when an alert was cleared."""
        cutoff = (now or datetime.now(UTC)) - self.quiet
        hours = f"{self.quiet.total_seconds() / 3600:g}"
        signals: list[Signal] = [
            Clear(
                condition,
                f"Nothing more has been dead-lettered by {condition.key} for {hours} hours. "
                "The dead letters stay on the DEADLETTER stream for an operator to inspect.",
                site_id,
            )
            for condition, site_id, newest in await self.alerts.raised_since("dead_letters")
            if newest < cutoff
        ]
        return await self.alerts.decide(signals)
