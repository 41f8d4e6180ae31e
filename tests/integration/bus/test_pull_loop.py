"""The shared `PullLoop` against a real nats-server: a verdict per message (ack, retry later,
dead-letter with the reason), a failing handler's batch redelivered, a clean stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Sequence

import nats.js.errors
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import StreamConfig

from shared.bus.pull_loop import ACK, Poison, PullLoop, Retry, Verdict
from shared.bus.topology import ConsumerSpec
from tests.support.fakes.dispatch import FakeDeadLetters
from tests.support.waiting import wait_until

STREAM = "PULL_LOOP_TEST"
SPEC = ConsumerSpec(STREAM, "pull-loop-test", "pulltest.>", "test consumer", ack_wait=5.0)


async def _publish(nc: Client, *bodies: bytes) -> None:
    js = nc.jetstream()
    await js.add_stream(StreamConfig(name=STREAM, subjects=["pulltest.>"]))
    for body in bodies:
        await js.publish("pulltest.x", body)


async def _settled(nc: Client) -> bool:
    try:
        info = await nc.jetstream().consumer_info(STREAM, SPEC.durable)
    except nats.js.errors.NotFoundError:  # the loop has not created it yet
        return False
    return info.num_pending == 0 and info.num_ack_pending == 0


async def test_each_message_gets_its_verdict(nc: Client) -> None:
    await _publish(nc, b"ok", b"poison", b"later")
    seen: Counter[bytes] = Counter()

    async def handle(batch: Sequence[Msg]) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for msg in batch:
            seen[msg.data] += 1
            if msg.data == b"poison":
                verdicts.append(Poison("the body is poison"))
            elif msg.data == b"later" and seen[msg.data] == 1:
                verdicts.append(Retry(0.1))
            else:
                verdicts.append(ACK)
        return verdicts

    dead = FakeDeadLetters()
    loop = PullLoop(nc.jetstream(), SPEC, handle, dead, batch=10, fetch_timeout=0.2)
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: seen[b"later"] == 2, timeout=30, message="redelivered once")
    await wait_until(lambda: _settled(nc), timeout=30, message="all acknowledged")
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert not loop.ready
    assert seen == {b"ok": 1, b"poison": 1, b"later": 2}
    [letter] = dead.letters
    assert (letter.reason, letter.consumer, letter.subject) == (
        "the body is poison",
        SPEC.durable,
        "pulltest.x",
    )


async def test_a_failing_handler_acknowledges_nothing_and_gets_the_batch_again(
    nc: Client,
) -> None:
    await _publish(nc, b"a", b"b")
    calls: list[list[bytes]] = []

    async def handle(batch: Sequence[Msg]) -> list[Verdict]:
        calls.append([m.data for m in batch])
        if len(calls) == 1:
            raise RuntimeError("database away")
        return [ACK] * len(batch)

    loop = PullLoop(
        nc.jetstream(),
        SPEC,
        handle,
        FakeDeadLetters(),
        batch=10,
        fetch_timeout=0.2,
        retry_delay=0.1,
    )
    task = asyncio.create_task(loop.run())
    await wait_until(lambda: _settled(nc), timeout=30, message="acknowledged after the retry")
    loop.stop()
    await asyncio.wait_for(task, 10)
    assert calls[0] == [b"a", b"b"]
    assert sorted(b for batch in calls[1:] for b in batch) == [b"a", b"b"]
