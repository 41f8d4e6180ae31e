"""Event types used only by tests, in a registry of their own."""

from __future__ import annotations

from typing import Any

from shared.events.envelope import EventData
from shared.events.registry import EventRegistry

test_events = EventRegistry()


@test_events.register
class CounterIncremented(EventData):
    """A test aggregate's event, at version 2 (v1 had `amount` as a string named `by`)."""

    event_type = "test.counter.incremented"
    event_version = 2

    amount: int
    note: str = ""


@test_events.upcaster("test.counter.incremented", from_version=1)
def _v1_to_v2(data: dict[str, Any]) -> dict[str, Any]:
    return {"amount": int(data["by"]), "note": "upcast from v1"}
