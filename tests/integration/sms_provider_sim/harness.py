"""Test harness: the simulator as a real subprocess, and a real HTTP receiver for its webhooks."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.runtime.nats_server import free_port
from tests.support.waiting import wait_until

ROOT = Path(__file__).resolve().parents[3]


class SimProcess:
    """`python -m services.sms_provider_sim` on a free port, with its output in a log file."""

    def __init__(self, log_path: Path, **env: str) -> None:
        self.log_path = log_path
        self.port = free_port()
        self.env = env
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL."""
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 90) -> None:
        """Start the process and wait (up to `timeout` seconds) until `/healthz` answers."""
        # The developer's own STAGGER_SIM_* settings must not leak into tests.
        env = {k: v for k, v in os.environ.items() if not k.startswith("STAGGER_SIM_")}
        env.update(
            {"STAGGER_SIM_PORT": str(self.port), "STAGGER_SIM_HOST": "127.0.0.1", **self.env}
        )
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "services.sms_provider_sim"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()

        async def healthy() -> bool:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"simulator exited early:\n{self.log()}")
            try:
                async with httpx.AsyncClient(trust_env=False, timeout=1) as client:
                    return (await client.get(f"{self.url}/healthz")).status_code == 200
            except httpx.HTTPError:
                return False

        await wait_until(healthy, timeout=timeout, message="simulator /healthz")

    def log(self) -> str:
        """Everything the process printed so far."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self, timeout: float = 15) -> int:
        """SIGTERM, then the exit code (killed, and failing, if it does not stop in time)."""
        assert self.process is not None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"simulator ignored SIGTERM for {timeout}s") from None

    def client(self, timeout: float = 10) -> httpx.AsyncClient:
        """An HTTP client for the simulator (never through a proxy)."""
        return httpx.AsyncClient(base_url=self.url, trust_env=False, timeout=timeout)


@contextlib.asynccontextmanager
async def simulator_running(log_dir: Path, **env: str) -> AsyncIterator[SimProcess]:
    """A simulator process for the gateway's tests, logging warnings only, stopped on exit.

    A module that sets faults runs its own: faults are global to one simulator."""
    process = SimProcess(log_dir / "sim.log", STAGGER_LOG_LEVEL="WARNING", **env)
    await process.start()
    try:
        yield process
    finally:
        process.terminate()


@dataclass
class Delivery:
    """One request the receiver got, exactly as it arrived."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    answered: int

    def json(self) -> Any:
        """The parsed body."""
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """A real HTTP server in the test process recording webhooks; can fail chosen deliveries."""

    port: int = field(default_factory=free_port)
    deliveries: list[Delivery] = field(default_factory=list)
    _failures: dict[str, int] = field(default_factory=dict)
    _server: uvicorn.Server | None = None
    _task: asyncio.Task[None] | None = None

    def url(self, path: str) -> str:
        """Full URL of `path` on this receiver."""
        return f"http://127.0.0.1:{self.port}{path}"

    def fail_next(self, path: str, count: int) -> None:
        """Answer 500 to the next `count` requests to `path`."""
        self._failures[path] = count

    def at(self, path: str) -> list[Delivery]:
        """Everything received on `path`, in arrival order."""
        return [d for d in self.deliveries if d.path == path]

    async def wait_for(self, path: str, count: int = 1, timeout: float = 15) -> list[Delivery]:
        """Wait until `path` has received at least `count` requests."""
        return await wait_until(
            lambda: len(self.at(path)) >= count and self.at(path),
            timeout=timeout,
            message=f"{count} webhook(s) at {path}",
        )

    async def _handle(self, request: Request) -> Response:
        path = request.url.path
        body = await request.body()
        failures = self._failures.get(path, 0)
        status = 500 if failures > 0 else 200
        if failures > 0:
            self._failures[path] = failures - 1
        self.deliveries.append(
            Delivery(path, dict(request.headers), body, time.monotonic(), status)
        )
        return Response("fail" if status == 500 else "ok", status_code=status)

    async def start(self) -> None:
        """Serve in this event loop."""
        app = Starlette(routes=[Route("/{path:path}", self._handle, methods=["POST"])])
        server = _QuietServer(
            uvicorn.Config(app, host="127.0.0.1", port=self.port, log_config=None, access_log=False)
        )
        self._server = server
        self._task = asyncio.create_task(server.serve())
        await wait_until(lambda: server.started, timeout=10, message="webhook receiver started")

    async def stop(self) -> None:
        """Stop serving."""
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.wait_for(self._task, 10)


class _QuietServer(uvicorn.Server):
    # The test process keeps its own signal handling (Ctrl-C must still stop pytest).
    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@dataclass
class Account:
    """A test's own provider account."""

    name: str
    api_key: str
    webhook_secret: str
    hook_path: str

    @property
    def auth(self) -> dict[str, str]:
        """The Authorization header."""
        return {"Authorization": f"Bearer {self.api_key}"}


def message(reference: str | None = None, **fields: Any) -> dict[str, Any]:
    """A valid `POST /v1/messages` body."""
    return {
        "reference": reference or f"msg-{secrets.token_hex(6)}",
        "to": "+447700900123",
        "from": "Smile Dent",
        "body": "Your appointment is tomorrow at 10:00. Reply C to confirm.",
        **fields,
    }


async def balance(client: httpx.AsyncClient, account: Account) -> float:
    """The account's balance through the provider API."""
    response = await client.get("/v1/balance", headers=account.auth)
    assert response.status_code == 200, response.text
    value: float = response.json()["balance"]
    return value


async def submissions(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    """The account's submission log."""
    response = await client.get("/v1/admin/submissions", params={"account": account.name})
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result


async def stored(client: httpx.AsyncClient, account: Account) -> list[dict[str, Any]]:
    """The account's stored messages (admin view)."""
    response = await client.get("/v1/admin/messages", params={"account": account.name})
    assert response.status_code == 200
    result: list[dict[str, Any]] = response.json()
    return result
