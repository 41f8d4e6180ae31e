"""`CallProcess`: calls answered by a real child process, in any order, and what a caller gets
when the child raises, stalls or is closed."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest

from shared.runtime.call_process import CallProcess


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
