"""Consuming a JetStream durable: FastStream's pull subscriber and Stagger's `PullLoop`, each
beside raw nats-py (fetch a batch, ack each) against the same server in the same run.

Every round publishes the same messages once into one stream; each contender then reads all of
them through its own new durable consumer (deliver all, explicit acks) and acknowledges each.
Rounds alternate the contenders; medians are reported.
"""

from __future__ import annotations

import asyncio
import statistics
import time
import uuid
from collections.abc import Sequence
from typing import Any

import nats
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, PullSub
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from bench.harness import Result
from shared.bus.deadletter import DeadLetter
from shared.bus.pull_loop import ACK, PullLoop, Verdict
from shared.bus.topology import ConsumerSpec

STREAM = "BENCH_CONSUME"
SUBJECT = "bench.consume"
MESSAGES = 20_000
BATCH = 500
ROUNDS = 3
BODY = b'{"message_id": "m", "site_id": "s", "body": "' + b"x" * 200 + b'"}'


class _NoDeadLetters:
    async def publish(self, letters: list[DeadLetter]) -> None:
        raise AssertionError("nothing here is poison")


def _spec(durable: str) -> ConsumerSpec:
    return ConsumerSpec(STREAM, durable, SUBJECT, "bench", ack_wait=60.0)


async def _raw(nc: nats.NATS, durable: str) -> float:
    js = nc.jetstream()
    await js.add_consumer(STREAM, config=_spec(durable).config())
    sub = await js.pull_subscribe_bind(durable=durable, stream=STREAM)
    started = time.perf_counter()
    seen = 0
    while seen < MESSAGES:
        try:
            batch = await sub.fetch(batch=BATCH, timeout=0.25)
        except TimeoutError:
            continue
        for msg in batch:
            await msg.ack()
        seen += len(batch)
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return MESSAGES / elapsed


async def _pull_loop(nc: nats.NATS, durable: str) -> float:
    seen = 0
    done = asyncio.Event()
    loop: PullLoop | None = None

    async def handle(batch: Sequence[Msg]) -> list[Verdict]:
        nonlocal seen
        seen += len(batch)
        if seen >= MESSAGES:
            assert loop is not None
            loop.stop()
            done.set()
        return [ACK] * len(batch)

    loop = PullLoop(
        nc.jetstream(), _spec(durable), handle, _NoDeadLetters(), batch=BATCH, fetch_timeout=0.25
    )
    started = time.perf_counter()
    task = asyncio.create_task(loop.run())
    await done.wait()
    elapsed = time.perf_counter() - started
    await task
    return MESSAGES / elapsed


async def _faststream(url: str, durable: str) -> float:
    broker = NatsBroker(url, logger=None)
    seen = 0
    done = asyncio.Event()

    @broker.subscriber(
        SUBJECT,
        stream=JStream(STREAM, declare=False),
        durable=durable,
        config=_spec(durable).config(),
        pull_sub=PullSub(batch_size=BATCH, timeout=0.25),
        ack_policy=AckPolicy.ACK,
    )
    async def handle(body: Any) -> None:
        nonlocal seen
        seen += 1
        if seen >= MESSAGES:
            done.set()

    started = time.perf_counter()
    await broker.start()
    await done.wait()
    elapsed = time.perf_counter() - started
    await broker.stop()
    return MESSAGES / elapsed


async def consume(nats_url: str) -> list[Result]:
    """Messages per second of each contender; each beside raw nats-py."""
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=[SUBJECT]))
    for _ in range(0, MESSAGES, BATCH):
        await asyncio.gather(*(js.publish(SUBJECT, BODY) for _ in range(BATCH)))
    info = await js.stream_info(STREAM)
    assert info.state.messages == MESSAGES, info.state
    raw: list[float] = []
    ours: list[float] = []
    fast: list[float] = []
    try:
        for n in range(ROUNDS):
            tag = uuid.uuid4().hex[:6]
            raw.append(await _raw(nc, f"raw-{n}-{tag}"))
            ours.append(await _pull_loop(nc, f"loop-{n}-{tag}"))
            fast.append(await _faststream(nats_url, f"fs-{n}-{tag}"))
    finally:
        await nc.close()
    baseline = statistics.median(raw)
    note = (
        f"{MESSAGES} messages of {len(BODY)} bytes read from one stream through a new durable "
        f"each (fetch batches of {BATCH}, every message acknowledged), median of {ROUNDS} "
        "alternating rounds; baseline: raw nats-py fetch + ack loop on the same server"
    )
    return [
        Result(
            "consume.pull_loop",
            "msgs/s",
            statistics.median(ours),
            baseline,
            notes=f"Stagger's PullLoop (verdict per message, keep-alive task per batch); {note}",
            extra={"samples": [round(x) for x in ours], "raw": [round(x) for x in raw]},
        ),
        Result(
            "consume.faststream",
            "msgs/s",
            statistics.median(fast),
            baseline,
            notes=f"FastStream 0.7.8 pull subscriber (one handler call and ack per message, "
            f"broker start included); {note}",
            extra={"samples": [round(x) for x in fast], "raw": [round(x) for x in raw]},
        ),
    ]


async def run(nats_url: str) -> list[Result]:
    """The consume benchmark."""
    print("   consume …", flush=True)
    return await consume(nats_url)
