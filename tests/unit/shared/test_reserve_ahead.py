"""How many sends a tick launches ahead of a free send slot (their limiter slots reserved in
the same transaction): as many as should get a slot within half of STALL, by how long provider
calls take lately, at most twice the send slots, less those already waiting."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from shared.dispatch.clock import SYSTEM_CLOCK
from shared.dispatch.flight import Flight
from shared.dispatch.flight import TickRun as _TickRun
from shared.dispatch.tuning import EngineTuning


def _engine() -> Flight:
    return Flight(EngineTuning(parallel_sends=16), SYSTEM_CLOCK)


async def test_none_ahead_until_a_provider_call_has_been_timed() -> None:
    assert _engine().soon_free(100, _TickRun(cast(Any, None))) == 0


async def test_fast_provider_fills_up_to_twice_the_send_slots_less_those_waiting() -> None:
    engine = _engine()
    run = _TickRun(cast(Any, None))
    engine.time_send(0.01)  # 16 slots freeing every 10 ms: 80 would get one within 50 ms
    assert engine.soon_free(100, run) == 32
    assert engine.soon_free(3, run) == 3
    waiting = [asyncio.create_task(asyncio.sleep(0)) for _ in range(5)]
    run.slotless.update(waiting)
    assert engine.soon_free(100, run) == 27
    await asyncio.gather(*waiting)


async def test_slow_provider_launches_hardly_any_ahead() -> None:
    engine = _engine()
    run = _TickRun(cast(Any, None))
    for _ in range(50):
        engine.time_send(0.5)  # a slot frees every 31 ms: one within 50 ms
    assert engine.soon_free(100, run) == 1
    engine.time_send(5.0)
    assert engine.soon_free(100, run) == 0
