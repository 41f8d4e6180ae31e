"""Event store benchmarks, each beside the same operation in plain nats-py.

- append_awaited: one append at a time, awaiting each acknowledgement, with the concurrency
  header, vs `js.publish` of the same bytes and headers.
- append_pipelined: a batch of appends in flight together (append_many) vs nats-py's
  `publish_async` of the same bytes and headers, then awaiting every acknowledgement.
- load: load a 100-event aggregate (last-message lookup + ordered replay, decoded) vs the same
  lookup and ordered read in nats-py without decoding.
- replay: decode a whole 100,000-event stream into typed envelopes vs an ordered nats-py read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from bench.harness import Result, alternate, rate
from shared.bus.topology import STREAMS_BY_NAME
from shared.events.codec import EXPECTED_LAST_SUBJECT_SEQ, encode
from shared.events.envelope import EventData, make_event
from shared.events.registry import EventRegistry
from shared.eventstore import AppendRequest, EventStore

bench_events = EventRegistry()


@bench_events.register
class SettingChanged(EventData):
    """A payload shaped like a small settings change (about 200 bytes of JSON)."""

    event_type = "bench.setting.changed"
    event_version = 1

    path: str
    old: int
    new: int
    reason: str


def event(i: int) -> object:
    return make_event(
        SettingChanged(path="sms.every_minutes", old=i, new=i + 1, reason="benchmark " * 10),
        source="bench",
        actor="user:bench",
        group_id="bench",
        site_id="site",
    )


async def fresh_stream(js: object, name: str) -> None:
    with contextlib.suppress(Exception):
        await js.delete_stream(name)  # type: ignore[attr-defined]
    config: StreamConfig = STREAMS_BY_NAME["SETTINGS"].config(1)
    config.name = name
    config.subjects = [f"{name.lower()}.>"]
    config.deny_delete = config.deny_purge = False
    await js.add_stream(config)  # type: ignore[attr-defined]


async def append_awaited(nc: Client, n: int = 2000) -> list[Result]:
    js = nc.jetstream()
    store = EventStore(nc, "BENCHA", events=bench_events)
    payloads = [encode(event(i)) for i in range(n)]

    async def project() -> float:
        await fresh_stream(js, "BENCHA")
        envelopes = [event(i) for i in range(n)]
        started = time.perf_counter()
        version = 0
        for envelope in envelopes:
            version = await store.append("bencha.agg", envelope, expected_version=version)
        return rate(n, started)

    async def baseline() -> float:
        await fresh_stream(js, "BENCHA")
        started = time.perf_counter()
        seq = 0
        for headers, body in payloads:
            headers = {
                **headers,
                EXPECTED_LAST_SUBJECT_SEQ: str(seq),
                "Nats-Msg-Id": str(uuid.uuid4()),
            }
            ack = await js.publish("bencha.agg", body, headers=headers, stream="BENCHA")
            seq = ack.seq
        return rate(n, started)

    ours, raw, _, _ = await alternate(project, baseline)
    return [
        Result(
            "event_store.append_awaited",
            "events/s",
            ours,
            raw,
            notes=f"{n} appends to one aggregate, each awaited, with expected version",
        ),
    ]


async def append_pipelined(nc: Client, n: int = 20_000) -> list[Result]:
    js = nc.jetstream()
    store = EventStore(nc, "BENCHP", events=bench_events)

    async def project() -> float:
        await fresh_stream(js, "BENCHP")
        requests = [AppendRequest(f"benchp.agg{i}", event(i), expected_version=0) for i in range(n)]
        started = time.perf_counter()
        results = await store.append_many(requests)
        assert all(isinstance(r, int) for r in results)
        return rate(n, started)

    async def baseline() -> float:
        await fresh_stream(js, "BENCHP")
        messages = []
        for i in range(n):
            headers, body = encode(event(i))
            headers[EXPECTED_LAST_SUBJECT_SEQ] = "0"
            messages.append((f"benchp.agg{i}", body, headers))
        started = time.perf_counter()
        futures = [
            await js.publish_async(subject, body, headers=headers, stream="BENCHP")
            for subject, body, headers in messages
        ]
        await asyncio.gather(*futures)
        return rate(n, started)

    ours, raw, _, _ = await alternate(project, baseline)
    return [
        Result(
            "event_store.append_pipelined",
            "events/s",
            ours,
            raw,
            notes=f"{n} new aggregates appended with expected version 0, acks awaited together; "
            "baseline: nats-py publish_async (encoding done before the clock starts)",
        ),
    ]


async def load(nc: Client, events_per_aggregate: int = 100, loads: int = 200) -> list[Result]:
    js = nc.jetstream()
    await fresh_stream(js, "BENCHL")
    store = EventStore(nc, "BENCHL", events=bench_events)
    await store.append_many(
        [AppendRequest("benchl.agg", event(i)) for i in range(events_per_aggregate)]
    )

    async def project() -> float:
        started = time.perf_counter()
        for _ in range(loads):
            history = await store.load("benchl.agg")
            assert len(history.events) == events_per_aggregate
        return rate(loads, started)

    async def baseline() -> float:
        started = time.perf_counter()
        for _ in range(loads):
            last = await js.get_last_msg("BENCHL", "benchl.agg", direct=True)
            got: list[object] = []
            done = asyncio.Event()

            async def cb(
                msg: object,
                last_seq: int = last.seq or 0,
                got: list[object] = got,
                done: asyncio.Event = done,
            ) -> None:
                got.append(msg)
                if msg.metadata.sequence.stream >= last_seq:  # type: ignore[attr-defined]
                    done.set()

            sub = await js.subscribe(
                "benchl.agg",
                stream="BENCHL",
                ordered_consumer=True,
                cb=cb,
                config=ConsumerConfig(
                    ack_policy=AckPolicy.NONE, mem_storage=True, deliver_policy=DeliverPolicy.ALL
                ),
            )
            await done.wait()
            name = (await sub.consumer_info()).name
            await sub.unsubscribe()
            await js.delete_consumer("BENCHL", name)  # as EventStore.load does
            assert len(got) == events_per_aggregate
        return rate(loads, started)

    ours, raw, _, _ = await alternate(project, baseline)
    return [
        Result(
            "event_store.load",
            "loads/s",
            ours,
            raw,
            notes=f"aggregate of {events_per_aggregate} events, decoded and upcast-checked; "
            "baseline: direct get + ordered consumer without decoding",
        ),
    ]


async def replay(nc: Client, n: int = 100_000) -> list[Result]:
    js = nc.jetstream()
    await fresh_stream(js, "BENCHR")
    store = EventStore(nc, "BENCHR", events=bench_events)
    for start in range(0, n, 10_000):
        await store.append_many(
            [AppendRequest(f"benchr.agg{i % 500}", event(i)) for i in range(start, start + 10_000)]
        )

    async def project() -> float:
        started = time.perf_counter()
        count = 0
        async for _ in store.replay():
            count += 1
        assert count == n
        return rate(n, started)

    async def baseline() -> float:
        started = time.perf_counter()
        count = 0
        done = asyncio.Event()

        async def cb(msg: object) -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        sub = await js.subscribe(
            ">",
            stream="BENCHR",
            ordered_consumer=True,
            cb=cb,
            pending_msgs_limit=32768,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, mem_storage=True, deliver_policy=DeliverPolicy.ALL
            ),
        )
        await done.wait()
        value = rate(n, started)
        name = (await sub.consumer_info()).name
        await sub.unsubscribe()
        await js.delete_consumer("BENCHR", name)
        return value

    ours, raw, _, _ = await alternate(project, baseline, rounds=3)
    return [
        Result(
            "event_store.replay",
            "events/s",
            ours,
            raw,
            notes=f"{n} events decoded into typed envelopes; baseline: ordered consumer "
            "counting raw messages",
        ),
    ]


async def run(nats_url: str) -> list[Result]:
    """Every event-store benchmark."""
    nc = await nats.connect(nats_url)
    try:
        results = []
        for bench in (append_awaited, append_pipelined, load, replay):
            print(f"   {bench.__name__} …", flush=True)
            results += await bench(nc)
        return results
    finally:
        await nc.close()
