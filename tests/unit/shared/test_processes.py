"""Children tied to the process that started them: the kernel stops them when it dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from shared.runtime import processes
from shared.runtime.processes import die_with_this_process
from tests.support.stack import pid_alive
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


def test_a_child_whose_parent_died_before_it_was_tied_does_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stand-in for "the parent was killed between fork and prctl": the child then has a
    # different parent from the one that asked for the tie, and must not start its program.
    marker = tmp_path / "ran"
    monkeypatch.setattr(processes.os, "getpid", lambda: 1)
    preexec = die_with_this_process()
    monkeypatch.undo()
    child = subprocess.Popen(
        [sys.executable, "-c", f"open({str(marker)!r}, 'w').close()"], preexec_fn=preexec
    )
    assert child.wait(30) == 1
    assert not marker.exists()


async def test_a_child_gets_sigterm_when_the_process_that_started_it_is_killed() -> None:
    starter = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys, time\n"
            "from shared.runtime.processes import die_with_this_process\n"
            "child = subprocess.Popen(['sleep', '300'], preexec_fn=die_with_this_process())\n"
            "print(child.pid, flush=True)\n"
            "time.sleep(300)\n",
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
    )
    assert starter.stdout is not None
    child = int(starter.stdout.readline())
    try:
        assert pid_alive(child)
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait(10)
        await wait_until(lambda: not pid_alive(child), timeout=10, message="child stopped")
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)
