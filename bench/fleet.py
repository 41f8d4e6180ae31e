"""Stagger's processes as separate OS processes for benchmarks and the chaos check.

Each replica is `python -m services.<name>` (what `stagger service <name>` runs) with its own
environment, HTTP port and log file; the SMS provider simulator and the SMTP sink are the local
stand-ins `stagger up` runs. Every child gets PR_SET_PDEATHSIG, so a driver killed outright takes
them with it, and its own session, so a Ctrl-C in the terminal reaches only the driver, which
then stops them in order. A fresh PostgreSQL database per run is created and dropped here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.runtime.nats_server import free_port, port_open
from shared.runtime.processes import die_with_this_process, stop_process
from tests.support.processes import PORT_VARS

ROOT = Path(__file__).resolve().parents[1]


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any STAGGER_* setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


@dataclass
class Child:
    """One child process: a service replica or a stand-in."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    history: list[tuple[str, int, float]] = field(default_factory=list)

    @property
    def url(self) -> str:
        """Base URL of its HTTP port."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The running process id, if it runs."""
        if self.process is None or self.process.poll() is not None:
            return None
        return self.process.pid

    def start(self) -> Child:
        """Start it (from the main thread: PR_SET_PDEATHSIG follows the starting thread)."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_this_process(),
            )
        self.starts += 1
        self.history.append(("started", self.process.pid, time.time()))
        return self

    def kill(self) -> int:
        """SIGKILL (a crash); returns the pid it had."""
        if self.process is None or self.process.poll() is not None:
            raise RuntimeError(f"{self.name} is not running")
        pid = self.process.pid
        os.kill(pid, signal.SIGKILL)
        self.process.wait(10)
        self.history.append(("killed", pid, time.time()))
        return pid

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM (drain), then SIGKILL after `timeout`."""
        stop_process(self.process, timeout)

    def tail(self, lines: int = 30) -> str:
        """The end of its log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_http(self, path: str, timeout: float = 90) -> None:
        """Until `GET path` answers 200 (or the process exits: an error with its log)."""
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(trust_env=False, timeout=2) as http:
            while time.monotonic() < deadline:
                if self.process is None or self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
                with contextlib.suppress(httpx.HTTPError):
                    if (await http.get(f"{self.url}{path}")).status_code == 200:
                        return
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name}: {path} not 200 within {timeout}s:\n{self.tail()}")

    async def wait_port(self, timeout: float = 30) -> None:
        """Until something listens on its port."""
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if self.process is None or self.process.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.name} did not listen within {timeout}s:\n{self.tail()}")
            await asyncio.sleep(0.1)


class Fleet:
    """Every child process of a run; `stop_all` leaves none behind."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.children: list[Child] = []

    def service(self, name: str, replica: int, env: dict[str, str]) -> Child:
        """Start one replica of a Stagger service on a free HTTP port."""
        port = free_port()
        label = f"{name}-{replica}"
        full = {
            **env,
            PORT_VARS[name]: str(port),
            "STAGGER_VAR_DIR": str(self.root / "var" / label),
            "STAGGER_INSTANCE_ID": f"chaos-{label}",
        }
        child = Child(
            label,
            [sys.executable, "-m", f"services.{name}"],
            full,
            self.root / "logs" / f"{label}.log",
            port,
        )
        self.children.append(child.start())
        return child

    def stand_in(self, name: str, module: str, port: int, env: dict[str, str]) -> Child:
        """Start the SMS provider simulator or the SMTP sink."""
        child = Child(
            name,
            [sys.executable, "-m", module],
            env,
            self.root / "logs" / f"{name}.log",
            port,
        )
        self.children.append(child.start())
        return child

    def stop_all(self, timeout: float = 20) -> None:
        """SIGTERM everything at once, wait, then SIGKILL what is left."""
        running = [c for c in self.children if c.pid is not None]
        for child in running:
            with contextlib.suppress(ProcessLookupError):
                assert child.process is not None
                child.process.terminate()
        deadline = time.monotonic() + timeout
        for child in running:
            assert child.process is not None
            try:
                child.process.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.process.kill()
                child.process.wait(5)
