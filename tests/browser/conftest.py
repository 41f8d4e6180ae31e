"""Browser tests of the console: real services, Debian's Chromium driven by Playwright.

One stack per test module: the session's nats-server, a config service, an audit service, the
SMS provider simulator and an SMS gateway, each a real process on free ports in a temp var dir.
Chromium is `/usr/bin/chromium` (never a downloaded build); without it the tests skip on a
laptop and fail under CI=true. Screenshots go to `test-artifacts/screenshots/`.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from nats.aio.client import Client

from shared.bus.topology import ensure_streams
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from tests.conftest import delete_all_streams
from tests.integration.config.conftest import ConfigHarness
from tests.support.processes import ROOT, ServiceProcess, service_env, start_service
from tests.support.services import require
from tests.support.staff import StaffLogin, seed_staff

CHROMIUM = "/usr/bin/chromium"  # Debian's package; never a downloaded browser build
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "test-artifacts" / "screenshots"
SIM_KEY = "sim-dev-key"
SIM_ACCOUNT = "sim-default"
SIM_CREDITS = 1000


@dataclass
class SimProcess:
    """The SMS provider simulator as a real process."""

    port: int
    process: subprocess.Popen[bytes]
    lines: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def start_simulator(env: dict[str, str]) -> SimProcess:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "services.sms_provider_sim"],
        cwd=ROOT,
        env={
            **env,
            "STAGGER_SIM_PORT": str(port),
            "STAGGER_SIM_SEED": "7",
            "STAGGER_SIM_DEFAULT_CREDITS": str(SIM_CREDITS),
            "STAGGER_SIM_DEFAULT_API_KEY": SIM_KEY,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    sim = SimProcess(port, process)

    def pump() -> None:
        assert process.stdout is not None
        for raw in process.stdout:
            sim.lines.append(raw.decode(errors="replace").rstrip())

    threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("simulator exited:\n" + "\n".join(sim.lines[-30:]))
        try:
            answer = httpx.get(
                f"{sim.url}/v1/balance", headers={"Authorization": f"Bearer {SIM_KEY}"}, timeout=1
            )
            if answer.status_code == 200:
                return sim
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    sim.stop()
    raise RuntimeError("simulator not ready in 30s:\n" + "\n".join(sim.lines[-30:]))


@dataclass
class ConsoleStack:
    """Everything the console talks to, and helpers to set up groups, sites and tokens."""

    config: ConfigHarness
    audit: ServiceProcess
    gateway: ServiceProcess
    sim: SimProcess
    nc: Client
    env: dict[str, str]

    @property
    def url(self) -> str:
        return self.config.url

    async def group(self) -> dict[str, Any]:
        """A fresh group with admin and auditor tokens and users, and two sites (the second one
        SMS-ready)."""
        group_id = await self.config.create_group()
        admin = await self.config.token(group_id, "group_admin")
        first = await self.config.create_site(admin, group_id, name="High Street")
        second = await self.config.create_site(
            admin, group_id, name="Riverside", settings=self.sim_settings(group_id)
        )
        await self.listed(admin, group_id, first["site_id"], second["site_id"])
        return {
            "group_id": group_id,
            "admin": admin,
            "auditor": await self.config.token(group_id, "auditor"),
            "admin_user": await self.staff(group_id, "group_admin"),
            "auditor_user": await self.staff(group_id, "auditor"),
            "site": first["site_id"],
            "sim_site": second["site_id"],
        }

    async def staff(
        self, group_id: str, role: str, sites: list[str] | None = None, **kw: Any
    ) -> StaffLogin:
        """A staff user of the group (seeded in the config database)."""
        return await seed_staff(self.config.env, self.config.box, group_id, role, sites, **kw)

    async def listed(self, admin: str, group_id: str, *site_ids: str) -> None:
        """Wait until the config read model lists the sites (the console's site list)."""
        from tests.support.waiting import wait_until

        async def present() -> bool:
            async with self.config.client(admin) as api:
                rows = (await api.get(f"/api/v1/groups/{group_id}/sites")).json()
            return set(site_ids) <= {r["site_id"] for r in rows}

        await wait_until(present, timeout=20, message=f"sites {site_ids} listed")

    @staticmethod
    def sim_account(group_id: str) -> str:
        """The group's own name for the simulator account (groups never share an account;
        the simulator knows the account by its API key)."""
        return f"{SIM_ACCOUNT}-{group_id}"

    def sim_settings(self, group_id: str) -> dict[str, Any]:
        """SMS settings that send through this stack's simulator."""
        return {
            "sms": {
                "provider": {
                    "kind": "simulator",
                    "account_id": self.sim_account(group_id),
                    "secret": SIM_KEY,
                    "base_url": self.sim.url,
                },
                "sender_id": "SmileDent",
            }
        }

    async def site_events(self, site_id: str) -> int:
        """How many events the site's settings aggregate has."""
        from shared.bus.topology import SETTINGS

        info = await self.nc.jetstream().stream_info(
            SETTINGS, subjects_filter=f"settings.*.{site_id}"
        )
        return sum((info.state.subjects or {}).values())


@pytest.fixture(scope="module")
async def stack(
    nats_url: str, tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> AsyncIterator[ConsoleStack]:
    nc = await nats.connect(nats_url)
    await delete_all_streams(nc)
    await ensure_streams(nc.jetstream())
    key = generate_key()
    # A module may tune its services (`STACK_ENV = {...}`), e.g. a gateway that gives up at once.
    extra = {**getattr(request.module, "STACK_ENV", {}), "STAGGER_SECRET_KEY": key}
    env = service_env(nats_url, tmp_path_factory.mktemp("console-var"), extra=extra)
    started: list[Any] = []
    made: ConsoleStack | None = None
    try:
        sim = start_simulator(env)
        started.append(sim)
        audit = start_service("audit", env, wait=False)
        started.append(audit)
        gateway = start_service("sms_gateway", env, wait=False)
        started.append(gateway)
        config = start_service("config", env)
        started.append(config)
        audit.wait_ready()
        gateway.wait_ready()
        made = ConsoleStack(
            ConfigHarness(config, nc, env, SecretBox([key.encode()])), audit, gateway, sim, nc, env
        )
        yield made
    finally:
        if made is not None and made.audit not in started:
            started.append(made.audit)  # a test stopped the audit service and started another
        for process in reversed(started):
            process.stop()
        with contextlib.suppress(Exception):
            await nc.close()


@pytest.fixture(scope="module")
def scheduler(stack: ConsoleStack) -> Iterator[ServiceProcess]:
    """A scheduler beside the module's stack, for tests whose messages must really go out on
    ticks (the stack itself has none: messages wait in the gateway's queue)."""
    process = start_service("scheduler", stack.env)
    try:
        yield process
    finally:
        process.stop()


def chromium_path() -> str | None:
    """Debian's Chromium, if installed."""
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else None


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Any]:
    path = chromium_path()
    require(path is not None, "Chromium", f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=path, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh browser context (no cookies) and page; a screenshot is kept if the test fails."""
    context = await browser.new_context(viewport={"width": 1100, "height": 900})
    context.set_default_timeout(15_000)
    tab = await context.new_page()
    try:
        yield tab
    finally:
        report = getattr(request.node, "rep_call", None)
        if report is not None and report.failed:
            SCREENSHOTS.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(Exception):
                await tab.screenshot(
                    path=str(SCREENSHOTS / f"FAILED-{request.node.name}.png"), full_page=True
                )
        await context.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


async def fill_sign_in(page: Any, base_url: str, user: StaffLogin, code: str | None = None) -> None:
    """Type email, password and code into the sign-in page and press Sign in."""
    await page.goto(f"{base_url}/console/login")
    await page.get_by_label("Email").fill(user.email)
    await page.get_by_label("Password").fill(user.password)
    await page.get_by_label("Authenticator code").fill(user.code() if code is None else code)
    await page.get_by_role("button", name="Sign in").click()


async def login(page: Any, base_url: str, user: StaffLogin) -> None:
    """Sign in with email, password and authenticator code, as a person would."""
    await fill_sign_in(page, base_url, user)
    from playwright.async_api import expect

    await expect(page.get_by_role("heading", level=1, name="Sites")).to_be_visible()


async def screenshot(page: Any, name: str) -> Path:
    """Save a full-page screenshot as a test artefact."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"
