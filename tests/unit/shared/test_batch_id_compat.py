"""`batch_id` joined MessageAccepted, MessageQueued and CancelRequested without a new version.

That is safe only while it holds both ways, which these tests check: events written before the
field decode with it unset, and a reader built before the field (the same class without it)
still decodes the events written now (`EventData` ignores unknown fields), so a rolling
upgrade needs no upcaster. A field that is required, or renames or retypes one, would need a
new version and an upcaster (see test_settings_snapshot.py for how).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import create_model

from shared.events.codec import decode
from shared.events.envelope import EventData
from shared.events.schemas.control import CancelRequested
from shared.events.schemas.dispatch import MessageQueued
from shared.events.schemas.messages import MessageAccepted

WRITTEN_BEFORE: dict[type[EventData], dict[str, Any]] = {
    MessageAccepted: {
        "message_id": "m-1",
        "group_id": "g",
        "site_id": "s",
        "channel": "sms",
        "to": "+447700900123",
        "body": "Hello",
        "submitted_at": "2026-11-27T09:00:00+00:00",
    },
    MessageQueued: {
        "message_id": "m-1",
        "group_id": "g",
        "site_id": "s",
        "channel": "sms",
        "to": "+447700900123",
    },
    CancelRequested: {"group_id": "g", "site_id": "s", "channel": "sms", "message_ids": ["m-1"]},
}


def _headers(cls: type[EventData]) -> dict[str, str]:
    return {
        # batch_id was added at v1: events from before it are v1 (later versions upcast them).
        "ce-type": f"{cls.event_type}.v1",
        "ce-id": "e-1",
        "ce-source": "urn:stagger:test",
        "ce-time": datetime(2026, 11, 27, tzinfo=UTC).isoformat(),
    }


@pytest.mark.parametrize("cls", list(WRITTEN_BEFORE), ids=lambda c: c.__name__)
def test_an_event_written_before_the_field_decodes_with_it_unset(cls: type[EventData]) -> None:
    event = decode(_headers(cls), json.dumps(WRITTEN_BEFORE[cls]).encode())
    assert isinstance(event.data, cls)
    assert event.data.batch_id is None  # type: ignore[attr-defined]


@pytest.mark.parametrize("cls", list(WRITTEN_BEFORE), ids=lambda c: c.__name__)
def test_a_reader_from_before_the_field_reads_the_events_written_now(
    cls: type[EventData],
) -> None:
    fields = {
        name: (info.annotation, info)
        for name, info in cls.model_fields.items()
        if name != "batch_id"
    }
    before = create_model(f"{cls.__name__}Before", __base__=EventData, **fields)  # type: ignore[call-overload]
    now = cls.model_validate({**WRITTEN_BEFORE[cls], "batch_id": "b-1"})
    old = before.model_validate_json(now.model_dump_json())
    assert old.model_dump() == {k: v for k, v in now.model_dump().items() if k != "batch_id"}


def test_the_field_is_optional_everywhere() -> None:
    for cls in WRITTEN_BEFORE:
        assert not cls.model_fields["batch_id"].is_required()
