"""Envelope encoding, decoding and upcasting (no broker needed)."""

from __future__ import annotations

import pytest

from shared.events.codec import UndecodableEvent, decode, encode, split_type
from shared.events.envelope import RawEventData, make_event, uuid7
from shared.events.registry import EventRegistry, registry
from tests.support.events import CounterIncremented, test_events


def test_roundtrip_keeps_every_attribute() -> None:
    event = make_event(
        CounterIncremented(amount=3, note="x"),
        source="tests",
        actor="user:alice",
        subject="site-1",
        correlation_id="corr-1",
        group_id="g1",
        site_id="site-1",
    )
    headers, body = encode(event)
    assert headers["ce-type"] == "test.counter.incremented.v2"
    assert headers["Nats-Msg-Id"] == event.id
    back = decode(headers, body, events=test_events)
    assert back == event


def test_old_version_is_upcast() -> None:
    event = make_event(CounterIncremented(amount=0), source="t", actor="a")
    headers, _ = encode(event)
    headers["ce-type"] = "test.counter.incremented.v1"
    back = decode(headers, b'{"by": "41"}', events=test_events)
    assert back.data == CounterIncremented(amount=41, note="upcast from v1")
    assert back.version == 2


def test_unknown_type_is_an_error_unless_lenient() -> None:
    event = make_event(CounterIncremented(amount=1), source="t", actor="a")
    headers, body = encode(event)
    headers["ce-type"] = "test.never.heard.of.v1"
    with pytest.raises(UndecodableEvent):
        decode(headers, body, events=test_events)
    raw = decode(headers, body, events=test_events, lenient=True)
    assert isinstance(raw.data, RawEventData)
    assert raw.data.model_dump() == {"amount": 1, "note": ""}


def test_newer_version_than_known_is_kept_raw_when_lenient() -> None:
    event = make_event(CounterIncremented(amount=1), source="t", actor="a")
    headers, body = encode(event)
    headers["ce-type"] = "test.counter.incremented.v9"
    with pytest.raises(UndecodableEvent):
        decode(headers, body, events=test_events)
    assert isinstance(decode(headers, body, events=test_events, lenient=True).data, RawEventData)


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (None, b"{}"),
        ({"ce-type": "no-version"}, b"{}"),
        (
            {
                "ce-type": "test.counter.incremented.v2",
                "ce-id": "x",
                "ce-source": "s",
                "ce-time": "not a time",
            },
            b'{"amount": 1}',
        ),
        (
            {
                "ce-type": "test.counter.incremented.v2",
                "ce-id": "x",
                "ce-source": "s",
                "ce-time": "2026-01-01T00:00:00+00:00",
            },
            b"not json",
        ),
        (
            {
                "ce-type": "test.counter.incremented.v2",
                "ce-id": "x",
                "ce-source": "s",
                "ce-time": "2026-01-01T00:00:00+00:00",
            },
            b'{"amount": "lots"}',
        ),
    ],
)
def test_malformed_messages_are_undecodable(headers: dict | None, body: bytes) -> None:
    with pytest.raises(UndecodableEvent):
        decode(headers, body, events=test_events)


def test_split_type() -> None:
    assert split_type("stagger.site.settings_changed.v12") == ("stagger.site.settings_changed", 12)
    with pytest.raises(UndecodableEvent):
        split_type("stagger.site.v")


def test_uuid7_is_time_ordered_and_versioned() -> None:
    ids = [uuid7() for _ in range(50)]
    assert all(u.version == 7 for u in ids)
    assert [u.int >> 80 for u in ids] == sorted(u.int >> 80 for u in ids)


def test_registry_refuses_duplicates_and_reports_gaps() -> None:
    local = EventRegistry()
    local.register(CounterIncremented)
    register_v1 = local.upcaster("test.counter.incremented", 1)
    register_v1(lambda d: d)
    with pytest.raises(ValueError, match="registered twice"):
        register_v1(lambda d: d)

    empty = EventRegistry()
    empty.register(CounterIncremented)
    assert empty.missing_upcasters() == ["test.counter.incremented v1->v2"]


def test_every_registered_stagger_event_has_a_complete_upcaster_chain() -> None:
    import shared.events.schemas  # noqa: F401  (registers everything)

    assert registry.missing_upcasters() == []
    assert registry.known_types(), "the catalogue is empty"
