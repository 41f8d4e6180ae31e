"""Start-up waits for NATS and the database with bounded retries and a clear log line.

What an orchestrator sees when a service starts before its dependencies: the service says what
it is waiting for, starts as soon as they appear, and exits non-zero with the reason once its
patience (`STAGGER_STARTUP_TIMEOUT_SECONDS`) is spent.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from shared.config import StaggerConfig
from shared.runtime.nats_server import NatsServer, free_port
from shared.runtime.service import (
    BaseService,
    ServiceContext,
    StartupCancelled,
    new_context,
    running,
)
from tests.support.processes import ServiceProcess, service_env, start_service


def test_start_up_waits_for_nats_then_runs(tmp_path: Path) -> None:
    port = free_port()
    env = service_env(
        f"nats://127.0.0.1:{port}",
        tmp_path / "var",
        extra={"STAGGER_STARTUP_TIMEOUT_SECONDS": "60"},
    )
    service = start_service("audit", env, wait=False)
    server = NatsServer(port=port, store_dir=tmp_path / "nats")
    try:
        _wait_for_line(service, "waiting for NATS")
        server.start()
        service.wait_ready(timeout=60)
        assert service.stop() == 0
    finally:
        service.stop()
        server.stop()


def test_start_up_gives_up_on_an_absent_database_with_a_clear_line(
    nats_url: str, tmp_path: Path
) -> None:
    closed = free_port()
    env = service_env(
        nats_url,
        tmp_path / "var",
        database_url=f"postgresql+asyncpg://stagger@127.0.0.1:{closed}/stagger",
        extra={"STAGGER_STARTUP_TIMEOUT_SECONDS": "2"},
    )
    service = start_service("audit", env, wait=False)
    try:
        assert service.process is not None
        code = service.process.wait(timeout=60)
    finally:
        service.stop()
    assert code != 0
    logs = service.logs()
    assert "waiting for the database" in logs
    assert "gave up waiting for the database" in logs


def test_sigterm_while_waiting_for_nats_stops_at_once(tmp_path: Path) -> None:
    # What happens to every child when the supervisor is SIGKILLed during start-up: the kernel
    # sends SIGTERM, and the embedded NATS it was waiting for is gone too.
    env = service_env(
        f"nats://127.0.0.1:{free_port()}",
        tmp_path / "var",
        extra={"STAGGER_STARTUP_TIMEOUT_SECONDS": "300"},
    )
    service = start_service("audit", env, wait=False)
    try:
        _wait_for_line(service, "waiting for NATS")
        assert service.process is not None
        service.process.send_signal(signal.SIGTERM)
        code = service.process.wait(timeout=10)
    finally:
        service.stop()
    assert code == 0
    assert "stopped while waiting for NATS" in service.logs()


def test_sigterm_with_nats_gone_exits_in_seconds(tmp_path: Path) -> None:
    # The other half of a killed supervisor: NATS stops together with a running service. The
    # drain's flushes and the readers' consumer clean-up must not wait out their timeouts.
    port = free_port()
    server = NatsServer(port=port, store_dir=tmp_path / "nats").start()
    env = service_env(f"nats://127.0.0.1:{port}", tmp_path / "var")
    service = start_service("sms_gateway", env)
    try:
        assert service.process is not None
        server.stop()
        service.process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        code = service.process.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        service.stop()
        server.stop()
    assert code == 0, service.logs()[-3000:]
    assert took < 4, f"took {took:.1f}s to stop:\n{service.logs()[-3000:]}"


class _StartsForever(BaseService):
    """A service whose own start-up never finishes (an awaited snapshot that never comes)."""

    name = "audit"

    def __init__(self) -> None:
        self.entered = asyncio.Event()

    async def start(self, ctx: ServiceContext) -> None:
        self.entered.set()
        await asyncio.Event().wait()


async def test_stopping_during_a_services_own_start_up_ends_it_at_once(
    nats_url: str, tmp_path: Path
) -> None:
    definition = _StartsForever()
    settings = StaggerConfig(
        nats_url=nats_url, var_dir=tmp_path / "var", audit_http_port=free_port()
    )

    ctx = new_context(definition, settings)

    async def run() -> None:
        async with running(definition, settings, ctx):
            pytest.fail("start-up finished although it never returns")

    task = asyncio.create_task(run())
    await asyncio.wait_for(definition.entered.wait(), 30)
    ctx.stopping.set()  # what the SIGTERM handler does
    started = time.monotonic()
    with pytest.raises(StartupCancelled):
        await asyncio.wait_for(task, 15)
    assert time.monotonic() - started < 2


def _wait_for_line(service: ServiceProcess, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in service.logs():
        assert service.process is not None and service.process.poll() is None, service.logs()
        assert time.monotonic() < deadline, f"no {text!r} in:\n{service.logs()[-2000:]}"
        time.sleep(0.05)
