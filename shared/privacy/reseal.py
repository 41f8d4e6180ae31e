"""Sealing the clear personal fields of a stored event with its recipient's keys
(`stagger privacy rewrite-streams`, docs/privacy.md).

Which fields, per event type, is `clear_fields.RULES`: those the producers seal when they
write. Body and reply keys are those of the event's own UTC day, so retention treats an old
event as it treats one written sealed that day. A recipient erased before the rewrite gets no
key back: their fields are sealed under a key that is thrown away at once, so they read
"erased" like every other field of theirs.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.restream import Stored
from shared.bus.topology import OPTOUTS
from shared.events.schemas.privacy import RecipientErased
from shared.eventstore import EventStore
from shared.privacy.cipher import new_data_key, seal
from shared.privacy.clear_fields import (
    RULES,
    clear_values,
    event_name,
    needs_sealing,
    recipient_of,
    sealed_copy,
    sealed_subject,
    when_of,
)
from shared.privacy.codec import PersonalData, day_of, key_id


def _data(msg: Stored) -> dict[str, Any] | None:
    try:
        data = json.loads(msg.data or b"null")
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _when(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def holds_clear(msg: Stored) -> bool:
    """True if a stored event still carries a personal field in clear."""
    ce_type = (msg.headers or {}).get("ce-type")
    if event_name(ce_type) not in RULES:
        return False
    data = _data(msg)
    return data is not None and needs_sealing(ce_type, data, (msg.headers or {}).get("ce-subject"))


async def erased_recipients(nc: Client) -> set[tuple[str, str]]:
    """(group, tag) of every recipient an erasure event names."""
    found: set[tuple[str, str]] = set()
    async for event in EventStore(nc, OPTOUTS).replay(
        filter_subject=subjects.erasures("*"), lenient=True
    ):
        if isinstance(event.data, RecipientErased):
            found.add((event.data.group_id, event.data.recipient_tag))
    return found


class Resealer:
    """Turns a stored event with clear personal fields into the same event sealed."""

    def __init__(self, personal: PersonalData, erased: set[tuple[str, str]]) -> None:
        self._personal = personal
        self._erased = erased

    async def __call__(self, msg: Stored) -> tuple[dict[str, str], bytes] | None:
        """The event's new headers and data, or None when it has nothing to seal (or names
        nobody)."""
        headers = dict(msg.headers or {})
        ce_type = headers.get("ce-type")
        if event_name(ce_type) not in RULES:
            return None
        data = _data(msg)
        subject = headers.get("ce-subject")
        if data is None or not needs_sealing(ce_type, data, subject):
            return None
        found = recipient_of(ce_type, data)
        if found is None:
            return None  # no recipient to take keys from: left as it is, reported by the survey
        group, recipient = found
        tag = (await self._personal.ready()).tag(group, recipient)
        day = day_of(_when(when_of(ce_type, data) or headers.get("ce-time")))
        keys: dict[str, tuple[str, bytes]] = {}
        for kind in {kind for kind, _ in clear_values(RULES[event_name(ce_type)], data)}:
            kid = key_id(tag, kind, day)
            if (group, tag) in self._erased:
                keys[kind] = (kid, new_data_key())  # never stored: reads "erased"
            else:
                keys[kind] = (kid, await self._personal.keys.get_or_create(group, kid))

        def sealed(kind: str, value: str) -> str:
            kid, key = keys[kind]
            return seal(key, group, kid, value)

        out = sealed_copy(ce_type, data, sealed, tag)
        new_subject = sealed_subject(ce_type, data, subject, tag)
        if new_subject is not None:
            headers["ce-subject"] = new_subject
        # As pydantic writes events: compact, UTF-8.
        return headers, json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()
