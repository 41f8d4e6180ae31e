"""Whether a claimed SMS may go now, and when a deferred one is tried again (pure rules).

Checked before any provider call: E.164, a body within the provider's maximum, a sender the
provider accepts, and the recipient's quiet hours in their local time. A message that cannot
go for a reason its settings may fix is deferred, never failed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from shared.domain.phone import is_e164, timezone_for_number
from shared.domain.quiet_hours import QuietHours
from shared.domain.site_settings import parse_hhmm

MISCONFIGURED_RETRY = timedelta(minutes=5)
"""A site whose provider or sender is not usable is looked at again after this."""
SHORTEST_WAIT = 1.0


@dataclass(frozen=True)
class Decision:
    """`send`, or why not: `fail` (never), `defer` (until `retry_at`)."""

    kind: Literal["send", "defer", "fail"]
    reason: str = ""
    retry_at: datetime | None = None


SEND = Decision("send")


@functools.lru_cache(maxsize=256)
def guard(start: str, end: str) -> QuietHours:
    """The quiet-hours guard of a setting (checked twice per message: parsed once)."""
    return QuietHours(parse_hhmm(start), parse_hhmm(end))


def decide_quiet_hours(
    recipient: str, start: str, end: str, site_timezone: str, now: datetime
) -> Decision:
    """Defer to the next allowed instant outside the recipient's sending hours."""
    zone = timezone_for_number(recipient, site_timezone)
    hours = guard(start, end)
    if hours.is_allowed(now, zone):
        return SEND
    return Decision(
        "defer",
        f"outside the recipient's quiet hours ({start}-{end} {zone})",
        hours.next_allowed(now, zone),
    )


def decide_message(recipient: str, body: str) -> Decision:
    """What no provider can change: a number and a body."""
    if not is_e164(recipient):
        return Decision("fail", f"{recipient!r} is not an E.164 phone number")
    if not body.strip():
        return Decision("fail", "an SMS needs a body")
    return SEND


def decide_provider(
    body: str, kind: str, max_body_chars: int, sender: str | None, now: datetime
) -> Decision:
    """What the site's provider accepts: body length and a sender."""
    if len(body) > max_body_chars:
        return Decision(
            "fail",
            f"the body has {len(body)} characters; {kind} accepts at most {max_body_chars}",
        )
    if sender is None:
        return Decision(
            "defer",
            f"no sender ID is set: {kind} needs the site's number as sender",
            now + MISCONFIGURED_RETRY,
        )
    return SEND


def sender(site_sender: str | None, needs_sender: bool, default_sender: str) -> str | None:
    """Who the message is from: the site's sender ID, else the default where allowed."""
    if site_sender:
        return site_sender
    return None if needs_sender else default_sender


def wait_until(retry_at: datetime, now: datetime) -> float:
    """Seconds to wait before a retry at `retry_at` (at least `SHORTEST_WAIT`)."""
    return max((retry_at - now).total_seconds(), SHORTEST_WAIT)
