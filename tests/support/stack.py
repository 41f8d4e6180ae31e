"""Start Stagger processes the way an operator does, on free ports in a temporary var dir."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.config import SERVICE_NAMES
from shared.runtime.nats_server import free_port

ROOT = Path(__file__).resolve().parents[2]


def service_ports() -> dict[str, str]:
    """Environment giving every service its own free HTTP port."""
    return {
        "STAGGER_HTTP_PORT": str(free_port()),
        "STAGGER_SCHEDULER_HTTP_PORT": str(free_port()),
        "STAGGER_EMAIL_GATEWAY_HTTP_PORT": str(free_port()),
        "STAGGER_SMS_GATEWAY_HTTP_PORT": str(free_port()),
        "STAGGER_AUDIT_HTTP_PORT": str(free_port()),
    }


def pid_alive(pid: int) -> bool:
    """True if the process exists and is not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def pids_mentioning(text: str) -> list[int]:
    """Live processes whose command line or environment contains `text`.

    The services get their var dir through the environment, not the command line, so a
    process the supervisor started (or restarted) after we last looked is still found.
    """
    found = []
    me = os.getpid()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        needle = text.encode()
        if (needle in cmdline or needle in environ) and pid_alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def command_lines(pids: list[int]) -> list[str]:
    """What each process was started as, for failure messages."""
    lines = []
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        command = raw.replace(b"\0", b" ").decode(errors="replace").strip()
        lines.append(f"{pid}: {command}")
    return lines


@dataclass
class StackProcess:
    """`stagger up` running in the background, its output collected."""

    process: subprocess.Popen[bytes]
    env: dict[str, str]
    lines: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.env['STAGGER_HTTP_PORT']}"

    def child_pids(self) -> list[int]:
        return [
            int(m) for line in self.lines for m in re.findall(r"started \w+ \(pid (\d+)\)", line)
        ]

    def healthz(self) -> httpx.Response | None:
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=2)
        except httpx.HTTPError:
            return None

    def interrupt(self) -> int:
        self.process.send_signal(signal.SIGINT)
        return self.process.wait(60)


def start_stack(
    var_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    demo: bool = True,
    database_url: str | None = None,
) -> StackProcess:
    """Run `stagger up` with embedded NATS and SQLite under `var_dir` (`demo=False`: without
    the demo group, whose sites hold the simulator's default account; `database_url`: every
    service on that database instead of SQLite)."""
    env = {
        **os.environ,
        "STAGGER_VAR_DIR": str(var_dir),
        "STAGGER_NATS_PORT": str(free_port()),
        "STAGGER_SIM_PORT": str(free_port()),
        "STAGGER_SMTP_SINK_PORT": str(free_port()),
        "STAGGER_LOG_FORMAT": "console",
        **service_ports(),
        **(extra_env or {}),
    }
    env.pop("STAGGER_NATS_URL", None)
    env.pop("STAGGER_DATABASE_URL", None)
    if database_url is not None:
        env["STAGGER_DATABASE_URL"] = database_url
    process = subprocess.Popen(
        [sys.executable, "-m", "services.cli.main", "up", *([] if demo else ["--no-demo"])],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    stack = StackProcess(process, env)

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            stack.lines.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=pump, daemon=True).start()
    return stack


EXPECTED_SERVICES = SERVICE_NAMES
