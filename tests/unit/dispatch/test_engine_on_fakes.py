"""The engine's handlers on in-memory fakes of its ports: ticks, outcomes, recovery, commands
and intake verdicts, without NATS or SQL."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

from nats.aio.msg import Msg

from shared.bus.pull_loop import ACK, Poison, Retry
from shared.dispatch.adapter import SendResult
from shared.dispatch.queue import Claimed
from shared.dispatch.tuning import EngineTuning
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.control import CancelRequested
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.ticks import TickIssued
from shared.sites import Site
from tests.support.fakes.dispatch import (
    FakeClock,
    ScriptedProvider,
    accepted,
    fake_world,
    tick,
)


def _msg(data: object, subject: str) -> Msg:
    headers, body = encode(make_event(data, source="test", actor="user:op"))  # type: ignore[arg-type]
    # A JetStream delivery's reply subject: delivered once, stream sequence 7.
    reply = "$JS.ACK.OUTBOX.sms-outbox.1.7.7.1767600000000000000.0"
    return Msg(None, subject=subject, reply=reply, data=body, headers=headers)  # type: ignore[arg-type]


async def test_a_tick_releases_up_to_its_budget_and_leaves_the_rest_queued() -> None:
    world = fake_world()
    for n in range(5):
        world.queue.add(accepted(f"m{n}"))
    assert await world.engine.run_tick(tick(world.clock, budget=3)) == 3
    assert sorted(world.provider.calls) == ["m0", "m1", "m2"]
    assert sorted(world.queue.states().values()) == ["queued", "queued", "sent", "sent", "sent"]
    assert world.relay.nudges > 0


async def test_a_provider_timeout_is_retried_later_not_failed_nor_sent() -> None:
    world = fake_world(EngineTuning(max_attempts=3, retry_base_seconds=10))
    world.queue.add(accepted("m1"))
    world.provider.script["m1"] = [TimeoutError("provider did not answer")]
    await world.engine.run_tick(tick(world.clock, budget=1))
    row = world.queue.rows[("s1", "m1")]
    assert row.state == "queued" and row.attempts == 1
    assert row.retry_at is not None and row.retry_at > world.clock.now()
    assert "TimeoutError" in row.reason
    # Not claimable before its back-off: a tick right now sends nothing.
    assert await world.engine.run_tick(tick(world.clock, budget=1)) == 0
    world.clock.at = row.retry_at
    assert await world.engine.run_tick(tick(world.clock, budget=1)) == 1
    assert world.queue.states() == {"m1": "sent"}


async def test_retries_end_failed_after_max_attempts() -> None:
    world = fake_world(EngineTuning(max_attempts=2, retry_base_seconds=1, retry_cap_seconds=1))
    world.queue.add(accepted("m1"))
    world.provider.script["m1"] = [SendResult("retry", error="busy")] * 2
    for _ in range(2):
        await world.engine.run_tick(tick(world.clock, budget=1))
        world.clock.at += timedelta(seconds=5)
    row = world.queue.rows[("s1", "m1")]
    assert row.state == "failed" and row.reason.startswith("gave up after 2 attempts")


async def test_an_interrupted_send_is_reconciled_never_resent() -> None:
    world = fake_world(EngineTuning(lease_seconds=30))
    world.queue.add(accepted("reached"))
    world.queue.add(accepted("lost"))
    # A replica claimed both and crashed: one had reached the provider, one had not.
    await world.queue.claim(["s1"], 2, lease=timedelta(seconds=30))
    world.provider.delivered.add("reached")
    world.clock.at += timedelta(seconds=31)
    assert await world.engine.recover() == 1
    assert world.queue.states() == {"reached": "sent", "lost": "sending"}
    # Absent on the first look: asked again once its lease runs out again.
    world.clock.at += timedelta(seconds=31)
    assert await world.engine.recover() == 1
    assert world.queue.states() == {"reached": "sent", "lost": "queued"}
    assert world.provider.calls == [], "recovery asks the provider, it does not send"
    await world.engine.run_tick(tick(world.clock, budget=5))
    assert world.provider.calls == ["lost"]


async def test_a_held_account_sends_nothing_and_stops_the_tick() -> None:
    world = fake_world()
    world.queue.add(accepted("m1"))
    world.provider.script["m1"] = [SendResult("hold", error="no credits")]
    await world.engine.run_tick(tick(world.clock, budget=5))
    assert world.limits.holds == {"acct-g1": "no credits"}
    assert await world.engine.run_tick(tick(world.clock, budget=5)) == 0
    assert world.provider.calls == ["m1"]
    assert world.queue.states() == {"m1": "queued"}


async def test_cancel_before_send_means_it_is_never_sent() -> None:
    world = fake_world()
    world.queue.add(accepted("m1"))
    world.queue.add(accepted("m2"))
    cancel = CancelRequested(group_id="g1", site_id="s1", channel="sms", message_ids=["m1"])
    await world.engine.command(_msg(cancel, "control.sms.cancel.s1"))
    await world.engine.run_tick(tick(world.clock, budget=5))
    assert world.provider.calls == ["m2"]
    assert world.queue.states() == {"m1": "cancelled", "m2": "sent"}
    assert world.dead_letters.letters == []


async def test_a_command_naming_a_bad_site_is_dead_lettered_with_the_reason() -> None:
    world = fake_world()
    cancel = CancelRequested(group_id="g1", site_id="a b", channel="sms", message_ids=["m1"])
    await world.engine.command(_msg(cancel, "control.sms.cancel.x"))
    (letter,) = world.dead_letters.letters
    assert "site id" in letter.reason


async def test_intake_verdicts_store_retry_and_poison() -> None:
    world = fake_world()
    good = _msg(accepted("m1"), "outbox.sms.s1")
    unknown_site = _msg(accepted("m2", site="s9"), "outbox.sms.s9")
    wrong_subject = _msg(accepted("m3"), "outbox.sms.s2")
    garbage = Msg(None, subject="outbox.sms.s1", data=b"not an event", headers={})  # type: ignore[arg-type]
    verdicts = await world.engine.intake_handler.handle(
        [good, unknown_site, wrong_subject, garbage]
    )
    assert verdicts[0] == ACK
    assert isinstance(verdicts[1], Retry)
    assert isinstance(verdicts[2], Poison) and "not the outbox of site s1" in verdicts[2].reason
    assert isinstance(verdicts[3], Poison)
    assert world.queue.states() == {"m1": "queued"}
    assert isinstance(world.queue.rows[("s1", "m1")].message, MessageAccepted)


async def test_a_send_still_under_way_when_its_lease_ran_out_is_not_queued_again() -> None:
    world = fake_world(EngineTuning(lease_seconds=30))
    world.queue.add(accepted("slow"))
    # Its replica is alive but starved: the lease ran out in the middle of the provider call.
    await world.queue.claim(["s1"], 1, lease=timedelta(seconds=30))
    world.clock.at += timedelta(seconds=31)
    assert await world.engine.recover() == 0, "not at the provider yet: no verdict"
    assert world.queue.states() == {"slow": "sending"}
    world.provider.delivered.add("slow")  # the starved call goes through meanwhile
    world.clock.at += timedelta(seconds=31)
    assert await world.engine.recover() == 1
    assert world.queue.states() == {"slow": "sent"}
    await world.engine.run_tick(tick(world.clock, budget=5))
    assert world.provider.calls == [], "sent once, by the replica that was slow"


async def test_idle_account_ticks_wait_for_intake_on_at_most_half_the_tick_workers() -> None:
    """An immediate-mode account tick that finds nothing queued may wait for intake for the rest
    of its second, holding its tick worker; with more such accounts than workers, the others'
    ticks expired unrun. Once half the workers wait, the next idle tick returns at once."""
    world = fake_world(EngineTuning(tick_workers=2))
    waiting, release = asyncio.Event(), asyncio.Event()
    plain_wait_for = world.clock.wait_for

    async def held_wait_for(awaitable: Awaitable[Any], timeout: float | None) -> Any:
        waiting.set()
        await release.wait()
        return await plain_wait_for(awaitable, timeout)

    world.clock.wait_for = held_wait_for  # type: ignore[method-assign]

    def account_tick(n: int) -> TickIssued:
        now = world.clock.now()
        return tick(world.clock, budget=10).model_copy(
            update={
                "tick_id": f"a-{n}",
                "scope": "account",
                "site_id": None,
                "sites": ["s1"],
                "not_after": now + timedelta(seconds=1),
            }
        )

    first = asyncio.create_task(world.engine.run_tick(account_tick(1)))
    await waiting.wait()
    # The one waiting slot is taken: this idle tick ends at once instead of waiting too.
    assert await asyncio.wait_for(world.engine.run_tick(account_tick(2)), 5) == 0
    release.set()
    assert await first == 0


async def test_a_wait_that_tried_nothing_uses_no_attempt() -> None:
    """The adapter tried nothing (the provider cannot tell yet about an earlier attempt): the
    message waits for `retry_after` and keeps all its attempts."""
    world = fake_world(EngineTuning(max_attempts=1))
    world.queue.add(accepted("m1"))
    world.provider.script["m1"] = [
        SendResult("retry", error="cannot tell yet", retry_after=30, attempt_used=False)
    ]
    await world.engine.run_tick(tick(world.clock, budget=1))
    row = world.queue.rows[("s1", "m1")]
    assert row.state == "queued" and row.attempts == 0
    assert row.retry_at is not None and row.retry_at - world.clock.now() >= timedelta(seconds=29)
    world.clock.at = row.retry_at
    assert await world.engine.run_tick(tick(world.clock, budget=1)) == 1
    assert world.queue.states() == {"m1": "sent"}


class _SlowFirstSend(ScriptedProvider):
    """A provider whose first call outlasts the tick's whole window."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__()
        self.clock = clock

    async def send(self, claimed: Claimed, site: Site) -> SendResult:
        if not self.calls:
            self.clock.at += timedelta(minutes=2)
        return await super().send(claimed, site)


async def test_what_waits_for_a_send_slot_past_the_window_goes_back_to_the_queue() -> None:
    # A replica whose slots are busy when a tick's window closes hands back the rest of its
    # claim, so that the account's next tick (maybe another replica's) can send it.
    clock = FakeClock()
    world = fake_world(EngineTuning(parallel_sends=1), provider=_SlowFirstSend(clock))
    world.clock.at = clock.at
    world.provider.clock = world.clock  # type: ignore[attr-defined]
    for n in range(8):
        world.queue.add(accepted(f"m{n}"))
    launched = await world.engine.run_tick(tick(world.clock, budget=8))
    # m0 took the one slot and the window; m1 the slot after it, with the few launched ahead
    # of a free slot (`Flight.soon_free`, at most 2 here); the rest went back.
    assert 2 <= launched <= 4
    assert len(world.provider.calls) == launched
    back = {key[1]: row for key, row in world.queue.rows.items() if row.state != "sent"}
    assert len(back) == 8 - launched
    for name, row in back.items():
        assert row.state == "queued" and row.attempts == 0, name
    # The next tick sends them.
    assert await world.engine.run_tick(tick(world.clock, budget=8)) == 8 - launched
    assert sorted(world.queue.states().values()) == ["sent"] * 8
