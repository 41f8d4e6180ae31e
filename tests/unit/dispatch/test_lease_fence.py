"""A replica too slow to renew its lease must not send a message another replica took over,
on fakes with a controllable clock: the send confirms its lease in the ledger first whenever
the lease may have run out, and needs no ledger write while it surely has not."""

from __future__ import annotations

from datetime import datetime, timedelta

from shared.dispatch.adapter import SEND, Verdict
from shared.dispatch.queue import Claimed
from shared.dispatch.tuning import EngineTuning
from shared.sites import Site
from tests.support.fakes.dispatch import FakeWorld, accepted, fake_world, tick

LEASE = timedelta(seconds=60)


def _starve_between_claim_and_send(world: FakeWorld, *, taken_over: bool) -> None:
    """While the message is checked, the replica stalls for most of its lease (no renewal
    lands); with `taken_over`, another replica meanwhile took the lease, asked the provider,
    found nothing and queued the message again."""

    async def check(claimed: Claimed, site: Site, now: datetime) -> Verdict:
        world.clock.at += LEASE * 0.75
        if taken_over:
            world.queue.taken_over.add(claimed.key)
            world.queue.rows[claimed.key].state = "queued"
        return SEND

    world.provider.check = check  # type: ignore[method-assign]


async def test_a_send_whose_lease_was_taken_over_never_reaches_the_provider() -> None:
    world = fake_world(EngineTuning(lease_seconds=LEASE.total_seconds()))
    world.queue.add(accepted("m1"))
    _starve_between_claim_and_send(world, taken_over=True)
    await world.engine.run_tick(tick(world.clock, budget=1))
    await world.engine.flight.settled()
    assert world.provider.calls == [], "the replica that took it over decides, not this one"
    assert world.queue.states() == {"m1": "queued"}
    assert world.engine.flight.held == set() and world.engine.flight.leased == {}


async def test_a_slow_replica_that_still_holds_the_lease_confirms_it_and_sends() -> None:
    world = fake_world(EngineTuning(lease_seconds=LEASE.total_seconds()))
    world.queue.add(accepted("m1"))
    _starve_between_claim_and_send(world, taken_over=False)
    await world.engine.run_tick(tick(world.clock, budget=1))
    await world.engine.flight.settled()
    assert world.provider.calls == ["m1"]
    assert world.queue.confirmations == 1
    assert world.queue.states() == {"m1": "sent"}


async def test_a_fresh_lease_costs_no_ledger_write() -> None:
    world = fake_world(EngineTuning(lease_seconds=LEASE.total_seconds()))
    for n in range(3):
        world.queue.add(accepted(f"m{n}"))
    await world.engine.run_tick(tick(world.clock, budget=3))
    await world.engine.flight.settled()
    assert sorted(world.provider.calls) == ["m0", "m1", "m2"]
    assert world.queue.confirmations == 0
