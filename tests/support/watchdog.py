"""Hang diagnosis: before pytest-timeout fails a stuck test, print where everything waits.

pytest-timeout's signal method fails the test but shows only the main thread, which in an
asyncio test is always the selector; the useful picture is every thread's stack and every
pending task's await chain, printed here a little before the timeout fires.
"""

from __future__ import annotations

import asyncio
import faulthandler
import sys
import threading
from collections.abc import AsyncIterator, Iterator

import pytest

_loop: asyncio.AbstractEventLoop | None = None


def _dump_tasks() -> None:
    loop = asyncio.get_running_loop()
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    print(f"\n--- watchdog: {len(pending)} pending asyncio tasks ---", file=sys.stderr)
    for task in pending:
        task.print_stack(limit=12, file=sys.stderr)
    sys.stderr.flush()


def _dump(name: str, after: float) -> None:
    print(f"\n--- watchdog: {name} still running after {after:.0f}s ---", file=sys.stderr)
    sys.stderr.flush()
    faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
    loop = _loop
    if loop is not None and loop.is_running():
        loop.call_soon_threadsafe(_dump_tasks)


@pytest.fixture(scope="session", autouse=True)
async def _session_loop() -> AsyncIterator[None]:
    """Remember the session's event loop so the watchdog can list its tasks."""
    global _loop
    _loop = asyncio.get_running_loop()
    yield
    _loop = None


@pytest.fixture(autouse=True)
def _watchdog(request: pytest.FixtureRequest) -> Iterator[None]:
    """Dump stacks when a test runs for most of its timeout."""
    marker = request.node.get_closest_marker("timeout")
    limit = float(marker.args[0]) if marker and marker.args else _ini_timeout(request.config)
    if limit <= 0:
        yield
        return
    after = limit * 0.8
    timer = threading.Timer(after, _dump, args=(request.node.nodeid, after))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def _ini_timeout(config: pytest.Config) -> float:
    try:
        return float(config.getini("timeout") or 0)
    except ValueError:
        return 0.0
