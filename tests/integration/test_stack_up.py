"""`stagger up` (what `./dev up` runs): healthy within 60 s, nothing left behind after Ctrl-C."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.support.stack import (
    EXPECTED_SERVICES,
    command_lines,
    pid_alive,
    pids_mentioning,
    start_stack,
)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


async def test_up_reports_every_service_healthy_and_ctrl_c_stops_everything(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    stack = start_stack(var_dir)
    started = time.monotonic()
    try:
        response = await stack.healthy(timeout=60)
        took = time.monotonic() - started
        body = response.json()
        assert body["status"] == "ready"
        assert sorted(body["services"]) == sorted(EXPECTED_SERVICES)
        assert all(s["status"] == "ready" for s in body["services"].values())
        assert took < 60
        assert (var_dir / "nats").is_dir(), "embedded NATS keeps its data under the var dir"
        assert any(line.startswith("config") and "|" in line for line in stack.lines), (
            "output lines are prefixed with their process name"
        )
        children = stack.child_pids()
        assert len(children) >= len(EXPECTED_SERVICES)
        nats_pids = pids_mentioning(str(var_dir / "nats"))
        assert nats_pids, "the embedded nats-server runs"
    finally:
        code = stack.interrupt()
    assert code == 0
    await wait_until(
        lambda: not any(pid_alive(p) for p in [*children, *nats_pids]),
        timeout=10,
        message="every child process gone",
    )
    assert pids_mentioning(str(var_dir)) == []


async def test_supervisor_killed_takes_its_children_with_it(tmp_path: Path) -> None:
    var_dir = tmp_path / "var"
    stack = start_stack(var_dir)
    try:
        await wait_until(
            lambda: len(stack.child_pids()) >= len(EXPECTED_SERVICES),
            timeout=30,
            message="services started",
        )
        children = stack.child_pids()
    finally:
        os.kill(stack.process.pid, signal.SIGKILL)
        stack.process.wait(10)
    # Children get SIGTERM from the kernel and shut down gracefully, which takes a moment,
    # also when NATS (stopped alongside them) is gone mid-start-up or mid-drain.
    await wait_until(
        lambda: pids_mentioning(str(var_dir)) == [] and not any(pid_alive(p) for p in children),
        timeout=30,
        message="orphans gone after the supervisor was killed",
        describe=lambda: f"still running: {command_lines(pids_mentioning(str(var_dir)))}",
    )
