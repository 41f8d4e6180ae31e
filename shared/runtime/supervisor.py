"""A small process supervisor for the embedded stack (`stagger up`).

It starts NATS first, then every process, prefixes each output line with the process's name,
restarts a process that dies (with back-off), and on SIGINT/SIGTERM stops the processes, waits
for them to drain, and stops NATS last. Children also get SIGTERM from the kernel if the
supervisor itself is killed, so nothing is left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from shared.runtime.nats_server import NatsServer
from shared.runtime.processes import die_with_this_process

COLORS = ("36", "33", "35", "32", "34", "31", "96", "93", "95")


@dataclass
class ProcessSpec:
    """One supervised process."""

    name: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Running:
    spec: ProcessSpec
    process: asyncio.subprocess.Process | None = None
    restarts: list[float] = field(default_factory=list)
    pump: asyncio.Task[None] | None = None


class Supervisor:
    """Runs processes until told to stop."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        *,
        nats: NatsServer | None = None,
        stop_timeout: float = 25.0,
        write: Callable[[str], None] | None = None,
        after_start: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.specs = specs
        self.after_start = after_start
        self.nats = nats
        self.stop_timeout = stop_timeout
        self._write = write or (lambda line: print(line, flush=True))
        self._running = {spec.name: _Running(spec) for spec in specs}
        self._stopping = asyncio.Event()
        self._width = max([len(s.name) for s in specs] + [len("supervisor"), len("nats")])
        self._tty = sys.stdout.isatty()

    def _prefix(self, name: str) -> str:
        label = name.ljust(self._width)
        if not self._tty:
            return f"{label} | "
        names = ["supervisor", "nats", *[s.name for s in self.specs]]
        color = COLORS[names.index(name) % len(COLORS)] if name in names else "0"
        return f"\033[{color}m{label} |\033[0m "

    def say(self, text: str, name: str = "supervisor") -> None:
        """Print one prefixed line."""
        self._write(self._prefix(name) + text)

    async def run(self) -> int:
        """Start everything, wait for a stop signal, stop everything."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._stopping.set)
        try:
            if self.nats is not None:
                # From this (the main) thread: the kernel ties a child's death signal to the
                # thread that started it, and a pool thread may end before we do.
                self.nats.start()
                self.say(
                    f"nats-server listening on {self.nats.url} (data in {self.nats.store_dir})",
                    "nats",
                )
            for running in self._running.values():
                await self._start(running)
            watchers = [asyncio.create_task(self._watch(r)) for r in self._running.values()]
            if self.after_start is not None:
                watchers.append(asyncio.create_task(self._after_start(self.after_start)))
            await self._stopping.wait()
            self.say("stopping every process")
            for watcher in watchers:
                watcher.cancel()
            await self._stop_all()
        finally:
            if self.nats is not None:
                await asyncio.to_thread(self.nats.stop)
                self.say("nats-server stopped", "nats")
        self.say("all stopped")
        return 0

    async def _after_start(self, work: Callable[[], Awaitable[None]]) -> None:
        # One-off work once everything is started (the first run's demo); its failure is
        # reported in a line, never a traceback, and stops nothing.
        try:
            await work()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self.say(f"first-run set-up failed: {exc}")

    async def _start(self, running: _Running) -> None:
        env = {**os.environ, **running.spec.env, "PYTHONUNBUFFERED": "1"}
        running.process = await asyncio.create_subprocess_exec(
            *running.spec.argv,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=env,
            start_new_session=True,
            preexec_fn=die_with_this_process(),
        )
        running.pump = asyncio.create_task(self._pump(running.spec.name, running.process))
        self.say(f"started {running.spec.name} (pid {running.process.pid})")

    async def _pump(self, name: str, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        while line := await process.stdout.readline():
            self._write(self._prefix(name) + line.decode(errors="replace").rstrip())

    async def _watch(self, running: _Running) -> None:
        while not self._stopping.is_set():
            assert running.process is not None
            code = await running.process.wait()
            if running.pump is not None:
                await running.pump
            if self._stopping.is_set():
                return
            now = time.monotonic()
            running.restarts = [t for t in running.restarts if now - t < 60] + [now]
            delay = min(2 ** len(running.restarts), 30)
            self.say(f"{running.spec.name} exited with code {code}; restarting in {delay}s")
            try:
                await asyncio.wait_for(self._stopping.wait(), delay)
                return
            except TimeoutError:
                await self._start(running)

    async def _stop_all(self) -> None:
        alive = [r for r in self._running.values() if r.process and r.process.returncode is None]
        for running in alive:
            assert running.process is not None
            with contextlib.suppress(ProcessLookupError):
                running.process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + self.stop_timeout
        for running in alive:
            assert running.process is not None
            try:
                await asyncio.wait_for(
                    running.process.wait(), max(0.1, deadline - time.monotonic())
                )
            except TimeoutError:
                self.say(f"{running.spec.name} did not stop in time; killing it")
                with contextlib.suppress(ProcessLookupError):
                    running.process.kill()
                await running.process.wait()
            if running.pump is not None:
                with contextlib.suppress(Exception):
                    await running.pump
