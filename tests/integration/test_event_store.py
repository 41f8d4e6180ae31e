"""The JetStream event store against a real nats-server."""

from __future__ import annotations

import asyncio

import nats
import pytest
from nats.aio.client import Client

from shared.bus.topology import SETTINGS, ensure_streams
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.eventstore import AppendRequest, ConcurrencyConflict, EventStore
from shared.runtime.nats_server import NatsServer, free_port
from tests.support.events import CounterIncremented, test_events


def counter_event(amount: int, actor: str = "test") -> object:
    return make_event(CounterIncremented(amount=amount), source="tests", actor=actor)


@pytest.fixture
def store(nc: Client) -> EventStore:
    return EventStore(nc, SETTINGS, events=test_events)


async def test_append_then_load_returns_events_in_order(store: EventStore) -> None:
    subject = "settings.g1.site-a"
    version = 0
    for amount in (1, 2, 3):
        version = await store.append(subject, counter_event(amount), expected_version=version)
    history = await store.load(subject)
    assert [e.data.amount for e in history.events] == [1, 2, 3]
    assert history.version == version
    assert [e.sequence for e in history.events] == sorted(e.sequence for e in history.events)


async def test_new_aggregate_requires_expected_version_zero(store: EventStore) -> None:
    subject = "settings.g1.fresh"
    await store.append(subject, counter_event(1), expected_version=0)
    with pytest.raises(ConcurrencyConflict) as info:
        await store.append(subject, counter_event(2), expected_version=0)
    assert info.value.actual == await store.version(subject)


async def test_two_concurrent_appends_exactly_one_wins(store: EventStore) -> None:
    subject = "settings.g1.site-b"
    base = await store.append(subject, counter_event(1), expected_version=0)
    results = await asyncio.gather(
        store.append(subject, counter_event(10), expected_version=base),
        store.append(subject, counter_event(20), expected_version=base),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, int)]
    conflicts = [r for r in results if isinstance(r, ConcurrencyConflict)]
    assert len(wins) == 1
    assert len(conflicts) == 1
    assert conflicts[0].expected == base
    history = await store.load(subject)
    assert len(history.events) == 2
    assert history.version == wins[0]


async def test_many_concurrent_writers_never_lose_an_update(store: EventStore) -> None:
    subject = "settings.g1.contended"
    landed: list[int] = []

    async def writer(amount: int) -> None:
        while True:
            version = await store.version(subject)
            try:
                await store.append(subject, counter_event(amount), expected_version=version)
                landed.append(amount)
                return
            except ConcurrencyConflict:
                continue

    await asyncio.gather(*(writer(i) for i in range(1, 21)))
    history = await store.load(subject)
    assert sorted(e.data.amount for e in history.events) == list(range(1, 21))
    assert [e.data.amount for e in history.events] == landed


async def test_duplicate_event_id_is_stored_once(store: EventStore, nc: Client) -> None:
    subject = "settings.g1.site-c"
    event = counter_event(5)
    first = await store.append(subject, event, expected_version=0)
    # A retry of the same append (its acknowledgement "lost") must not store it again.
    again = await store.append(subject, event, expected_version=0)
    assert again == first
    # Without a version check, JetStream's duplicate window recognises the id too.
    third = await store.append(subject, event)
    assert third == first
    info = await nc.jetstream().stream_info(SETTINGS, subjects_filter=subject)
    assert info.state.messages == 1


async def test_pipelined_appends_report_each_conflict(store: EventStore) -> None:
    requests = [
        AppendRequest(f"settings.g2.site-{i}", counter_event(i), expected_version=0)
        for i in range(50)
    ]
    results = await store.append_many(requests)
    assert all(isinstance(r, int) for r in results)
    stale = [
        AppendRequest(f"settings.g2.site-{i}", counter_event(100 + i), expected_version=0)
        for i in range(5)
    ]
    outcomes = await store.append_many(stale)
    assert all(isinstance(o, ConcurrencyConflict) for o in outcomes)


async def test_old_event_version_is_upcast_on_load(store: EventStore, nc: Client) -> None:
    subject = "settings.g1.legacy"
    # Write a v1 event exactly as an old build would have.
    v1 = make_event(CounterIncremented(amount=0), source="old-build", actor="legacy")
    headers, _ = encode(v1)
    headers["ce-type"] = "test.counter.incremented.v1"
    await nc.jetstream().publish(subject, b'{"by": "7"}', headers=headers, stream=SETTINGS)
    history = await store.load(subject)
    (event,) = history.events
    assert event.version == 2
    assert event.data == CounterIncremented(amount=7, note="upcast from v1")


async def test_replay_from_position_yields_the_rest_of_the_stream(store: EventStore) -> None:
    sequences = []
    for i in range(30):
        sequences.append(await store.append(f"settings.g3.s{i % 3}", counter_event(i)))
    replayed = [e async for e in store.replay(from_sequence=sequences[10])]
    assert [e.sequence for e in replayed] == sequences[10:]
    filtered = [e async for e in store.replay(filter_subject="settings.g3.s1")]
    assert [e.data.amount for e in filtered] == [i for i in range(30) if i % 3 == 1]
    assert [e async for e in store.replay(filter_subject="settings.nobody.none")] == []


async def test_aggregate_reloaded_after_server_restart_is_identical(tmp_path) -> None:
    server = NatsServer(port=free_port(), store_dir=tmp_path / "nats")
    server.start()
    try:
        client = await nats.connect(server.url)
        await ensure_streams(client.jetstream())
        store = EventStore(client, SETTINGS, events=test_events)
        subject = "settings.g9.site-z"
        version = 0
        for amount in range(1, 6):
            version = await store.append(subject, counter_event(amount), version)
        before = await store.load(subject)
        await client.close()
        server.stop()

        server.start()
        client = await nats.connect(server.url)
        store = EventStore(client, SETTINGS, events=test_events)
        after = await store.load(subject)
        assert after == before
        assert await store.append(subject, counter_event(6), expected_version=after.version) > 0
        await client.close()
    finally:
        server.stop()
