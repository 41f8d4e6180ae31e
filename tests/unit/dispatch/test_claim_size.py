"""A tick claims only what its replica can start soon, so that another replica's tick finds the
rest of an account's queue (two gateway replicas then share one account's work)."""

from __future__ import annotations

import asyncio
from collections import Counter

from shared.dispatch.adapter import AccountLimitsSpec, SendResult
from shared.dispatch.queue import Claimed
from shared.dispatch.tuning import EngineTuning
from shared.sites import Site
from tests.support.fakes.dispatch import ScriptedProvider, accepted, fake_world, tick


class HeldProvider(ScriptedProvider):
    """Sends wait at the provider until `answer` is set; `parallel`: the account's own bound."""

    def __init__(self, parallel: int | None = None) -> None:
        super().__init__()
        self.parallel = parallel
        self.answer = asyncio.Event()

    def limits_for(self, site: Site) -> AccountLimitsSpec:
        return AccountLimitsSpec(parallel=self.parallel)

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        self.calls.append(claimed.message_id)
        await self.answer.wait()
        return SendResult("sent", provider_message_id=f"p-{claimed.message_id}")


async def _until_calls(provider: HeldProvider, count: int) -> None:
    # Fake clock, no I/O: the engine reaches its provider calls within a few loop turns.
    for _ in range(10_000):
        if len(provider.calls) >= count:
            return
        await asyncio.sleep(0)
    raise AssertionError(f"{len(provider.calls)} provider calls, expected {count}")


async def _settle() -> None:
    for _ in range(200):
        await asyncio.sleep(0)


async def test_a_tick_leaves_what_its_send_slots_cannot_start_soon_to_other_replicas() -> None:
    provider = HeldProvider()
    world = fake_world(EngineTuning(parallel_sends=4), provider)
    for n in range(50):
        world.queue.add(accepted(f"m{n:02d}"))
    running = asyncio.create_task(world.engine.run_tick(tick(world.clock, budget=50)))
    await _until_calls(provider, 4)
    await _settle()
    states = Counter(world.queue.states().values())
    # Four sends at the provider and at most one batch claimed behind them; before, the tick
    # leased all 50 to this replica while its four send slots worked through them.
    assert 4 <= states["sending"] <= 8, states
    assert states["queued"] == 50 - states["sending"]
    # Another replica's tick on the account finds the rest.
    elsewhere = await world.queue.claim(["s1"], 100)
    assert len(elsewhere) == states["queued"]
    provider.answer.set()
    attempted = await asyncio.wait_for(running, 10)
    assert attempted == states["sending"]
    # Each message went to the provider once, by this replica or the other one.
    assert len(provider.calls) == len(set(provider.calls)) == attempted
    assert not set(provider.calls) & {c.message_id for c in elsewhere}


async def test_an_account_taking_fewer_sends_at_once_is_claimed_for_in_smaller_batches() -> None:
    # An SMTP account with two pooled connections: sends beyond two would wait for one while
    # holding send slots that another account's sends could use.
    provider = HeldProvider(parallel=2)
    world = fake_world(EngineTuning(parallel_sends=16), provider)
    for n in range(20):
        world.queue.add(accepted(f"m{n:02d}"))
    running = asyncio.create_task(world.engine.run_tick(tick(world.clock, budget=20)))
    await _until_calls(provider, 2)
    await _settle()
    states = Counter(world.queue.states().values())
    assert 2 <= states["sending"] <= 4, states
    assert len(provider.calls) <= 4
    provider.answer.set()
    assert await asyncio.wait_for(running, 10) == 20
    assert Counter(world.queue.states().values()) == {"sent": 20}
    assert sorted(provider.calls) == [f"m{n:02d}" for n in range(20)]


async def test_a_spaced_tick_still_claims_its_budget_at_once() -> None:
    # Spaced sends take no send slot until their turn: the tick claims its budget (as many as
    # its window holds) in one statement, as before.
    provider = HeldProvider()
    provider.answer.set()
    world = fake_world(EngineTuning(parallel_sends=2), provider)
    for n in range(6):
        world.queue.add(accepted(f"m{n}"))
    claims: list[int] = []
    claim = world.queue.claim

    async def counted(site_ids: list[str], limit: int, **kwargs: object) -> list[Claimed]:
        claims.append(limit)
        return await claim(site_ids, limit, **kwargs)  # type: ignore[arg-type]

    world.queue.claim = counted  # type: ignore[method-assign,assignment]
    assert await world.engine.run_tick(tick(world.clock, budget=6, spacing=1.0)) == 6
    await world.engine.settled()
    assert claims[0] == 6
    assert Counter(world.queue.states().values()) == {"sent": 6}
