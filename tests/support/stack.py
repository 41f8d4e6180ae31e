"""Start Stagger processes the way an operator does, on free ports in a temporary var dir."""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus.topology import SETTINGS
from shared.config import SERVICE_NAMES
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.integration.sms_gateway.harness import midday_zone
from tests.integration.sms_provider_sim.harness import SimProcess
from tests.support.waiting import wait_until

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

    async def healthy(self, timeout: float = 90) -> httpx.Response:
        """Wait for `/healthz` to answer 200 (every service ready); that answer."""
        answer: httpx.Response = await wait_until(
            lambda: (r := self.healthz()) is not None and r.status_code == 200 and r,
            timeout=timeout,
            interval=0.5,
            message="/healthz 200",
        )
        return answer

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


# --- a running stack with a group of one's own -------------------------------------------------


def simulator_provider(sim_url: str, rate_per_second: float | None = None) -> dict[str, Any]:
    """Site settings' `sms.provider` for the simulator's default account at `sim_url`."""
    provider: dict[str, Any] = {
        "kind": "simulator",
        "account_id": "sim-default",
        "secret": "sim-dev-key",
        "base_url": sim_url,
    }
    if rate_per_second is not None:
        provider["rate_per_second"] = rate_per_second
    return provider


def staggered_sms(sim_url: str, every_seconds: float) -> dict[str, Any]:
    """Site settings sending one SMS every `every_seconds` through the simulator, inside a
    session open all day every day (08:00-18:00 in a `midday_zone`)."""
    return {
        "sms": {
            "provider": simulator_provider(sim_url, 1 / every_seconds),
            "sender_id": "+61491570999",
            "mode": "staggered",
            "every_minutes": every_seconds / 60,
            "sessions": [
                {
                    "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                    "start": "08:00",
                    "end": "18:00",
                }
            ],
        }
    }


@dataclass
class StackGroup:
    """`stagger up` (healthy), the simulator it sends to, an operator's NATS connection, and
    a group of the test's own with a group admin's token."""

    stack: StackProcess
    sim_url: str
    nc: Client
    group_id: str
    admin: str

    def api(self, token: str | None = None) -> httpx.AsyncClient:
        """A client of the stack's API with `token` (default: the group admin's)."""
        return httpx.AsyncClient(
            base_url=self.stack.base_url,
            headers={"Authorization": f"Bearer {token or self.admin}"},
            timeout=30,
            trust_env=False,
        )

    async def create_site(self, settings: dict[str, Any], name: str = "High Street") -> str:
        """A new Australian site of the group (in a zone where it is about midday), its id."""
        site_id = f"s-{secrets.token_hex(3)}"
        async with self.api() as api:
            created = await api.post(
                f"/api/v1/groups/{self.group_id}/sites",
                json={
                    "site_id": site_id,
                    "name": name,
                    "timezone": midday_zone(),
                    "region": "AU",
                    "settings": settings,
                },
            )
        assert created.status_code == 201, created.text
        return site_id


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=1) as http:
            return (await http.get(f"{url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.asynccontextmanager
async def stack_with_group(
    work_dir: Path,
    extra_env: dict[str, str] | None = None,
    *,
    receipt_delay: float | None = None,
    database_url: str | None = None,
) -> AsyncIterator[StackGroup]:
    """`stagger up` without the demo group (whose sites hold the simulator's default account,
    which the test's group then uses) in `work_dir/var`, healthy, with the simulator (the
    stack's own, else one started as `./dev up` would) and a new group; all stopped on exit.

    `receipt_delay`: seconds before the simulator reports a delivery."""
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    sim_env = (
        {} if receipt_delay is None else {"STAGGER_SIM_RECEIPT_DELAY_SECONDS": str(receipt_delay)}
    )
    stack = start_stack(
        work_dir / "var",
        {"STAGGER_SIM_PORT": str(sim_port), **sim_env, **(extra_env or {})},
        demo=False,
        database_url=database_url,
    )
    own_sim: SimProcess | None = None
    try:
        await stack.healthy()
        gateway = f"http://127.0.0.1:{stack.env['STAGGER_SMS_GATEWAY_HTTP_PORT']}"
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: _answers(sim_url), timeout=5, message="the stack's sim")
        if not await _answers(sim_url):
            own_sim = SimProcess(
                work_dir / "sim.log",
                STAGGER_SIM_DEFAULT_WEBHOOK_URL=f"{gateway}/webhooks/sms/simulator",
                **sim_env,
            )
            own_sim.port = sim_port
            await own_sim.start()
        nc = await nats.connect(f"nats://127.0.0.1:{stack.env['STAGGER_NATS_PORT']}")
        try:
            group = f"g-{secrets.token_hex(3)}"
            box = SecretBox([generate_key().encode()])  # a group without secrets seals nothing
            await ConfigHandlers(
                nc, SettingsStore(EventStore(nc, SETTINGS)), box, None, simulator_enabled=True
            ).create_group(group, "Smile Group", {}, actor="test:operator")
            _, admin = await issue_token(nc, group_id=group, role="group_admin", label="admin")
            yield StackGroup(stack, sim_url, nc, group, admin)
        finally:
            await nc.close()
    finally:
        if own_sim is not None:
            own_sim.terminate()
        stack.interrupt()
