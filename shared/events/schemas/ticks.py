"""Ticks: permissions to send (the TICKS work queue).

A tick lets one gateway replica release at most `budget` messages, `spacing_seconds` apart,
between `not_before` and `not_after`. Its id is derived from (scope, channel, scheduled
instant), so scheduler replicas publishing the same tick store it once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from shared.events.envelope import EventData
from shared.events.registry import registry


@registry.register
class TickIssued(EventData):
    """Permission for a gateway to send up to `budget` messages now."""

    event_type = "stagger.tick.issued"
    event_version = 1

    tick_id: str
    channel: Literal["sms", "email"]
    scope: Literal["site", "account"]
    group_id: str | None = None
    site_id: str | None = None
    account: str
    sites: list[str] = []
    budget: int
    spacing_seconds: float
    scheduled_at: datetime
    not_before: datetime
    not_after: datetime
    reason: str
    manual: bool = False
    receive: bool = False
