"""Appending staff events to the ACCESS stream (the audit trail follows it)."""

from __future__ import annotations

from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.topology import ACCESS
from shared.events.envelope import EventData, make_event
from shared.eventstore import EventStore


async def record(nc: Client, data: EventData, *, actor: str, user_id: str, group_id: str) -> str:
    """Append one event to the user's aggregate; returns its id."""
    event = make_event(data, source="config", actor=actor, subject=user_id, group_id=group_id)
    await EventStore(nc, ACCESS).append(subjects.access_user(user_id), event)
    return event.id
