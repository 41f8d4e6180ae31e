"""A projection runner stops when cancelled, even when the cancel lands on a commit that has
just lost its compare-and-set (the failure surfaces as PositionMoved, not CancelledError)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest

from shared.db.projection import PositionMoved, ProjectionRunner


class _Named:
    name = "cancel-test"


async def test_a_cancel_that_surfaces_as_position_moved_still_stops_the_runner() -> None:
    runner = ProjectionRunner(cast(Any, None), cast(Any, None), cast(Any, _Named()))
    started = asyncio.Event()
    rounds = 0

    async def commit_losing_its_race(*, follow: bool) -> None:
        nonlocal rounds
        rounds += 1
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            raise PositionMoved("cancel-test") from None

    runner._run = commit_losing_its_race  # type: ignore[method-assign]
    task = asyncio.create_task(runner.run())
    await started.wait()
    task.cancel()
    # `wait`, not `wait_for`: a runner that outlives its cancel must fail the test, not hang it.
    done, _ = await asyncio.wait({task}, timeout=5)
    assert done == {task}, "the runner went round again after being cancelled"
    assert task.cancelled()
    assert rounds == 1
    assert runner.stats.moved == 0


async def test_a_position_moved_without_a_cancel_resumes() -> None:
    runner = ProjectionRunner(cast(Any, None), cast(Any, None), cast(Any, _Named()))
    rounds = 0
    again = asyncio.Event()

    async def lose_once(*, follow: bool) -> None:
        nonlocal rounds
        rounds += 1
        if rounds == 1:
            raise PositionMoved("cancel-test")
        again.set()
        await asyncio.Event().wait()

    runner._run = lose_once  # type: ignore[method-assign]
    task = asyncio.create_task(runner.run())
    await asyncio.wait_for(again.wait(), timeout=5)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert runner.stats.moved == 1
