"""Run one Stagger service as a real process, the way an orchestrator does."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from shared.domain.destinations import LOOPBACK_ALLOW
from shared.runtime.nats_server import free_port
from shared.runtime.processes import stop_process

ROOT = Path(__file__).resolve().parents[2]
PORT_VARS = {
    "config": "STAGGER_HTTP_PORT",
    "scheduler": "STAGGER_SCHEDULER_HTTP_PORT",
    "email_gateway": "STAGGER_EMAIL_GATEWAY_HTTP_PORT",
    "sms_gateway": "STAGGER_SMS_GATEWAY_HTTP_PORT",
    "audit": "STAGGER_AUDIT_HTTP_PORT",
}


@dataclass
class ServiceProcess:
    """One replica of one service."""

    name: str
    env: dict[str, str]
    port: int
    process: subprocess.Popen[bytes] | None = None
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> ServiceProcess:
        self.process = subprocess.Popen(
            [sys.executable, "-m", f"services.{self.name}"],
            cwd=ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        process = self.process

        def pump() -> None:
            assert process.stdout is not None
            for raw in process.stdout:
                self.lines.append(raw.decode(errors="replace").rstrip())

        threading.Thread(target=pump, daemon=True).start()
        return self

    def wait_ready(self, timeout: float = 60) -> ServiceProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"{self.name} exited with {self.process.returncode}:\n"
                    + "\n".join(self.lines[-40:])
                )
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready in {timeout}s:\n" + "\n".join(self.lines[-40:]))

    def stop(self, timeout: float = 30) -> int | None:
        """SIGTERM (drain), then SIGKILL after `timeout`; the exit code."""
        return stop_process(self.process, timeout)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def logs(self) -> str:
        return "\n".join(self.lines)


def service_env(
    nats_url: str,
    var_dir: Path,
    database_url: str | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a service process against the test NATS and a temp var dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_")}
    env.update(
        {
            "STAGGER_NATS_URL": nats_url,
            "STAGGER_VAR_DIR": str(var_dir),
            "STAGGER_LOG_FORMAT": "json",
            "STAGGER_HEARTBEAT_SECONDS": "0.5",
            "STAGGER_DRAIN_TIMEOUT_SECONDS": "5",
            "PYTHONUNBUFFERED": "1",
            # Tests drive SMS through the provider simulator (a test wanting it off says so).
            "STAGGER_SMS_SIMULATOR_ENABLED": "true",
            # The tests' servers listen on loopback (as under `stagger up`).
            "STAGGER_OUTBOUND_ALLOW": LOOPBACK_ALLOW,
        }
    )
    for var in PORT_VARS.values():
        env[var] = str(free_port())
    if database_url:
        env["STAGGER_DATABASE_URL"] = database_url
    env.update(extra or {})
    return env


def start_service(name: str, env: dict[str, str], *, wait: bool = True) -> ServiceProcess:
    """Start one replica and (by default) wait until it reports ready."""
    service = ServiceProcess(name, dict(env), int(env[PORT_VARS[name]])).start()
    return service.wait_ready() if wait else service


async def run_cli(env: Mapping[str, str], *args: str) -> tuple[int, str, str]:
    """`stagger <args>` as a process from the repository root: (exit code, stdout, stderr)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        cwd=ROOT,
        env=dict(env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
