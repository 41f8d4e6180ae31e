"""`CallProcess`: calls answered by a real child process, in any order, and what a caller gets
when the child raises, stalls or is closed."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.runtime.call_process import CallProcess, ChildExited


class _Echo:
    """Answers (pid, request) after sleeping the request's delay; raises for "boom"."""

    async def handle(self, request: Any) -> Any:
        word, delay = request
        if word == "boom":
            raise ValueError("the handler failed")
        await asyncio.sleep(delay)
        return (os.getpid(), word)

    async def close(self) -> None:
        return None


async def _echo(options: Any) -> _Echo:
    return _Echo()


@pytest.fixture
async def calls() -> AsyncIterator[CallProcess[Any]]:
    process: CallProcess[Any] = CallProcess(
        _echo, None, lost=lambda reason: ("lost", reason), timeout=2.0, name="echo"
    )
    await process.start()
    yield process
    await process.close()


def _not_sent(reason: str) -> Any:
    return ("not sent", reason)


async def test_calls_are_answered_by_the_child_each_with_its_own_answer(
    calls: CallProcess[Any],
) -> None:
    # The slow first call must not hold up the quick ones behind it.
    answers = await asyncio.gather(
        calls.call(("slow", 0.5), _not_sent),
        *(calls.call((f"quick{i}", 0.0), _not_sent) for i in range(5)),
    )
    assert [word for _, word in answers] == ["slow", *(f"quick{i}" for i in range(5))]
    assert {pid for pid, _ in answers} == {calls.pid}
    assert calls.pid != os.getpid()


async def test_a_handler_that_raises_gives_the_lost_answer_and_the_child_goes_on(
    calls: CallProcess[Any],
) -> None:
    kind, reason = await calls.call(("boom", 0.0), _not_sent)
    assert kind == "lost" and "the handler failed" in reason
    assert (await calls.call(("after", 0.0), _not_sent))[1] == "after"
    assert calls.started_count == 1


async def test_a_call_longer_than_the_timeout_gives_the_lost_answer(
    calls: CallProcess[Any],
) -> None:
    kind, reason = await calls.call(("stuck", 10.0), _not_sent)
    assert (kind, reason) == ("lost", "the echo process did not answer in time")


async def test_after_close_calls_are_not_sent(calls: CallProcess[Any]) -> None:
    await calls.close()
    assert await calls.call(("late", 0.0), _not_sent) == ("not sent", "the service is stopping")


class _Built:
    """Answers when it was built (wall clock): a factory that takes its time."""

    def __init__(self) -> None:
        self.built_at = time.time()

    async def handle(self, request: Any) -> Any:
        return self.built_at

    async def close(self) -> None:
        return None


async def _slow_to_build(options: Any) -> _Built:
    await asyncio.sleep(options)
    return _Built()


async def _cannot_build(options: Any) -> _Built:
    raise RuntimeError("no handler today")


async def test_start_returns_once_the_child_answers_calls() -> None:
    """A call made right after `start` goes straight to a built handler, not to a child still
    starting (its request would reach the network later than the caller counts on)."""
    process: CallProcess[Any] = CallProcess(
        _slow_to_build, 0.3, lost=lambda reason: ("lost", reason), timeout=5.0, name="slow"
    )
    try:
        await process.start()
        started = time.time()
        assert await process.call("when", _not_sent) <= started
    finally:
        await process.close()


async def test_a_child_that_cannot_start_leaves_calls_not_sent() -> None:
    process: CallProcess[Any] = CallProcess(
        _cannot_build, None, lost=lambda reason: ("lost", reason), timeout=5.0, name="broken"
    )
    try:
        with pytest.raises(ChildExited):
            await process.start()
        kind, reason = await process.call("anything", _not_sent)
        assert kind == "not sent" and "broken process did not start" in reason
        assert process.pid is None
    finally:
        await process.close()
