"""FastStream's supervisor lines about an idle pull fetch are dropped; real failures stay."""

from __future__ import annotations

import logging
import sys

from shared.logs import RoutineFetchTimeouts


def _record(message: str, error: BaseException | None) -> logging.LogRecord:
    exc_info = None
    if error is not None:
        try:
            raise error
        except BaseException:
            exc_info = sys.exc_info()
    return logging.LogRecord("faststream.x", logging.ERROR, __file__, 1, message, None, exc_info)


def test_idle_fetch_timeout_and_callback_chatter_are_dropped() -> None:
    keep = RoutineFetchTimeouts().filter
    assert not keep(_record("Task-40 raised an exception, retrying...", TimeoutError()))
    assert not keep(_record("callback for Task-40 is being executed...", None))


def test_other_failures_and_lines_are_kept() -> None:
    keep = RoutineFetchTimeouts().filter
    assert keep(_record("Task-40 raised an exception, retrying...", RuntimeError("boom")))
    assert keep(_record("`OnTick` waiting for messages", None))
    assert keep(_record("handler failed", TimeoutError()))
