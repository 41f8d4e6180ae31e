"""When a group commit's group is ready: full, or the oldest item has lingered long enough."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from shared.dispatch.gathering import Gathering


@dataclass
class Item:
    name: str
    arrived: float


def now() -> float:
    return asyncio.get_running_loop().time()


async def test_a_full_group_goes_without_waiting_out_the_linger() -> None:
    gathering: Gathering[Item] = Gathering(linger=3600, full=3, most=10)
    for name in "abc":
        gathering.add(Item(name, now()))
    group = await asyncio.wait_for(gathering.next_group(), timeout=5)
    assert [i.name for i in group] == ["a", "b", "c"]
    assert not gathering


async def test_a_group_that_arrives_while_waiting_goes_when_it_fills() -> None:
    gathering: Gathering[Item] = Gathering(linger=3600, full=2, most=10)
    gathering.add(Item("a", now()))
    waiting = asyncio.create_task(gathering.next_group())
    await asyncio.sleep(0)  # let it start waiting for more
    assert not waiting.done()
    gathering.add(Item("b", now()))
    group = await asyncio.wait_for(waiting, timeout=5)
    assert [i.name for i in group] == ["a", "b"]


async def test_a_lone_item_goes_once_it_has_lingered() -> None:
    gathering: Gathering[Item] = Gathering(linger=0.05, full=100, most=100)
    start = now()
    gathering.add(Item("a", start))
    group = await asyncio.wait_for(gathering.next_group(), timeout=5)
    assert [i.name for i in group] == ["a"]
    assert now() - start >= 0.05


async def test_an_item_that_already_lingered_goes_at_once() -> None:
    gathering: Gathering[Item] = Gathering(linger=3600, full=100, most=100)
    gathering.add(Item("old", now() - 3600))
    group = await asyncio.wait_for(gathering.next_group(), timeout=5)
    assert [i.name for i in group] == ["old"]


async def test_a_group_holds_at_most_most_and_the_rest_waits_in_order() -> None:
    gathering: Gathering[Item] = Gathering(linger=3600, full=2, most=3)
    for name in "abcde":
        gathering.add(Item(name, now()))
    first = await asyncio.wait_for(gathering.next_group(), timeout=5)
    second = await asyncio.wait_for(gathering.next_group(), timeout=5)
    assert [i.name for i in first] == ["a", "b", "c"]
    assert [i.name for i in second] == ["d", "e"]
    assert gathering.take_all() == []
