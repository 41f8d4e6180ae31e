"""Child processes of the load benchmark: started with a parent-death signal, stopped in order.

Every child is started from the main thread with `PR_SET_PDEATHSIG` (the kernel sends SIGTERM
when the forking *thread* dies, so never from a worker thread), and `Children.stop_all` stops
them in reverse start order: SIGTERM, a bounded wait, then SIGKILL. Output goes to log files,
so no pipe can fill up and block a child during a long run.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.runtime.processes import die_with_this_process, stop_process

ROOT = Path(__file__).resolve().parents[1]


@dataclass
class Child:
    """One child process and where its output goes."""

    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    url: str | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def tail(self, lines: int = 40) -> str:
        """The last lines of its output (for error messages)."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def wait_ready(self, path: str = "/readyz", timeout: float = 120) -> None:
        """Until `GET <url><path>` answers 200; fails at once if the process exits."""
        assert self.url is not None
        deadline = time.monotonic() + timeout
        async with httpx.AsyncClient(trust_env=False, timeout=2) as client:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"{self.name} exited with {self.process.returncode}:\n{self.tail()}"
                    )
                try:
                    if (await client.get(f"{self.url}{path}")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.2)
        raise RuntimeError(f"{self.name} not ready in {timeout:.0f}s:\n{self.tail()}")

    def stop(self, timeout: float = 20) -> None:
        """SIGTERM, then SIGKILL if it has not exited in time."""
        stop_process(self.process, timeout)


@dataclass
class Children:
    """Everything the benchmark started, stopped in reverse order."""

    log_dir: Path
    started: list[Child] = field(default_factory=list)

    def python_module(
        self, name: str, module: str, env: dict[str, str], url: str | None = None
    ) -> Child:
        """Start `python -m <module>` with `env`, output in `<log_dir>/<name>.log`."""
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", module],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                # Safe: children are started from the main thread only.
                preexec_fn=die_with_this_process(),
            )
        child = Child(name, process, log_path, url)
        self.started.append(child)
        return child

    def stop_all(self) -> None:
        """Stop every child, last started first; never raises."""
        while self.started:
            child = self.started.pop()
            try:
                child.stop()
            except Exception as exc:  # keep stopping the others
                print(f"   could not stop {child.name} ({child.pid}): {exc}", flush=True)


def rss_mb(pid: int) -> float | None:
    """Resident set size of a process in MiB (VmRSS from /proc), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
