"""The engine's side of failover: a held account's messages go through the site's standby
account (when it names one), recorded under the account that sent them; back to the primary
once it is released."""

from __future__ import annotations

import dataclasses

from shared.dispatch.adapter import SendResult
from shared.dispatch.queue import Claimed
from shared.sites import Site
from tests.support.fakes.dispatch import ScriptedProvider, accepted, fake_world, tick

STANDBY_VERSION = -1
"""Marks the site as it sends through its standby account (test only)."""


class WithStandby(ScriptedProvider):
    """A channel whose sites have a standby account `acct-standby`."""

    def __init__(self, standby: bool = True) -> None:
        super().__init__()
        self.standby = standby
        self.through: dict[str, str] = {}

    def account_for(self, site: Site) -> str | None:
        return "acct-standby" if site.version == STANDBY_VERSION else f"acct-{site.group_id}"

    def failover(self, site: Site) -> Site | None:
        if not self.standby:
            return None
        return dataclasses.replace(site, version=STANDBY_VERSION)

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        self.through[claimed.message_id] = self.account_for(site) or ""
        return await super().send(claimed, site)


async def test_a_held_account_s_messages_go_through_the_standby_account() -> None:
    adapter = WithStandby()
    world = fake_world(provider=adapter)
    for n in range(3):
        world.queue.add(accepted(f"m{n}"))
    await world.limits.hold("acct-g1", "no credits left")
    assert await world.engine.run_tick(tick(world.clock, budget=3)) == 3
    assert world.queue.states() == {"m0": "sent", "m1": "sent", "m2": "sent"}
    assert set(world.queue.sent_through.values()) == {"acct-standby"}
    assert set(adapter.through.values()) == {"acct-standby"}


async def test_once_the_primary_is_released_new_sends_go_back_to_it() -> None:
    adapter = WithStandby()
    world = fake_world(provider=adapter)
    world.queue.add(accepted("before"))
    await world.limits.hold("acct-g1", "no credits left")
    await world.engine.run_tick(tick(world.clock, budget=1))
    await world.limits.release("acct-g1")
    world.queue.add(accepted("after"))
    await world.engine.run_tick(tick(world.clock, budget=1))
    assert world.queue.sent_through == {"before": "acct-standby", "after": "acct-g1"}


async def test_without_a_standby_a_held_account_s_messages_wait_untouched() -> None:
    adapter = WithStandby(standby=False)
    world = fake_world(provider=adapter)
    world.queue.add(accepted("m1"))
    await world.limits.hold("acct-g1", "no credits left")
    assert await world.engine.run_tick(tick(world.clock, budget=1)) == 0
    assert world.queue.states() == {"m1": "queued"} and adapter.calls == []


async def test_when_both_accounts_are_held_nothing_is_sent_and_nothing_bounces() -> None:
    adapter = WithStandby()
    world = fake_world(provider=adapter)
    world.queue.add(accepted("m1"))
    await world.limits.hold("acct-g1", "no credits left")
    await world.limits.hold("acct-standby", "no credits left")
    assert await world.engine.run_tick(tick(world.clock, budget=1)) == 0
    assert world.queue.states() == {"m1": "queued"} and adapter.calls == []
