"""Every Stagger service runs with its own restricted NATS user from deploy/nats/accounts.conf.

The streams and durables are declared by the `admin` user (deploy/nats/provision.py); then each
service starts with nothing but its own user and does its real work: settings through the config
API, a provider test and queue depths over request/reply, SMS staggered by scheduler ticks and
sent through the simulator with receipts coming back, an email released by send-now (scheduler
→ manual tick → email gateway → SMTP), and the audit trail following all of it. The allow-lists
are complete when that all happens and the server logged no permission violation.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus.topology import DISPATCH, SETTINGS
from shared.config import SERVICE_NAMES
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.integration.deploy.nats_configs import (
    DeployedNats,
    connect_as,
    dev_password,
    provision,
    standalone,
)
from tests.integration.sms_gateway.harness import midday_zone, number
from tests.integration.sms_provider_sim.harness import SimProcess
from tests.support.processes import PORT_VARS, ServiceProcess, service_env, start_service
from tests.support.smtp import SinkProcess, start_sink_process
from tests.support.staff import StaffLogin, seed_staff, sign_in
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

ALL_WEEK = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def credentials_in_url(url: str, user: str) -> str:
    return url.replace("nats://", f"nats://{user}:{dev_password(user)}@", 1)


@contextlib.contextmanager
def running_services(
    server: DeployedNats, var_dir: Path, *, by_settings: bool = True, **extra: str
) -> Iterator[dict[str, ServiceProcess]]:
    """Start every service with its own user: in the URL, or in STAGGER_NATS_USER/PASSWORD."""
    base = service_env(server.url, var_dir, extra={"STAGGER_SECRET_KEY": generate_key(), **extra})
    started: dict[str, ServiceProcess] = {}
    try:
        for name in SERVICE_NAMES:
            env = dict(base)
            if by_settings:
                env["STAGGER_NATS_USER"] = name
                env["STAGGER_NATS_PASSWORD"] = dev_password(name)
            else:
                env["STAGGER_NATS_URL"] = credentials_in_url(server.url, name)
            started[name] = start_service(name, env)
        yield started
    finally:
        for service in started.values():
            service.stop()


async def metric(url: str, name: str, **labels: str) -> float:
    """The sum of a Prometheus sample over the series that carry `labels`."""
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:
        text = (await http.get(f"{url}/metrics")).text
    total = 0.0
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
    return total


async def dispatch_types(admin: Client, ids: list[str]) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    async for event in EventStore(admin, DISPATCH).replay(lenient=True):
        message_id = getattr(event.data, "message_id", None)
        if message_id in ids:
            found.setdefault(message_id, set()).add(event.type)
    return found


async def test_every_service_does_its_work_with_its_own_restricted_user(tmp_path: Path) -> None:
    with standalone(tmp_path / "nats") as server:
        result = provision(server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        sink: SinkProcess = start_sink_process(tmp_path / "sink")
        sms_port = free_port()
        sim = SimProcess(
            tmp_path / "sim.log",
            STAGGER_SIM_DEFAULT_WEBHOOK_URL=f"http://127.0.0.1:{sms_port}/webhooks/sms/simulator",
            STAGGER_SIM_RECEIPT_DELAY_SECONDS="0.2",
        )
        await sim.start()
        try:
            with running_services(
                server,
                tmp_path / "var",
                **{PORT_VARS["sms_gateway"]: str(sms_port), "STAGGER_LOG_LEVEL": "WARNING"},
            ) as services:
                async with connect_as(server.url, "admin") as operator:
                    await _exercise(operator.nc, services, sim.url, sink)
        finally:
            sim.terminate()
            sink.stop()
        assert server.violations() == [], "a service needed a subject its user may not use"


async def _exercise(
    admin: Client, services: dict[str, ServiceProcess], sim_url: str, sink: SinkProcess
) -> None:
    # The operator's part (admin user): a group and its administrator's API token.
    group = f"g-{secrets.token_hex(3)}"
    box = SecretBox([generate_key().encode()])
    await ConfigHandlers(
        admin, SettingsStore(EventStore(admin, SETTINGS)), box, None, simulator_enabled=True
    ).create_group(group, "Smile Group", {}, actor="test:operator")
    _, token = await issue_token(admin, group_id=group, role="group_admin", label="deploy")
    sms_site, email_site = f"s-{secrets.token_hex(3)}", f"s-{secrets.token_hex(3)}"
    zone = midday_zone()
    sms = {
        "provider": {
            "kind": "simulator",
            "account_id": "sim-default",
            "secret": "sim-dev-key",
            "base_url": sim_url,
            "rate_per_second": 1.0,
        },
        "sender_id": "+61491570999",
        "mode": "staggered",
        "every_minutes": 1 / 60,
        "sessions": [{"days": ALL_WEEK, "start": "08:00", "end": "18:00"}],
    }
    email = {
        "enabled": True,
        "address": "front@smile.example",
        "smtp": {"host": "127.0.0.1", "port": sink.port, "security": "none"},
        "mode": "manual",
        "per_minute": 60,
        "provider_preset": "custom",
    }
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        base_url=services["config"].url, headers=auth, timeout=30, trust_env=False
    ) as api:
        for site_id, settings in ((sms_site, {"sms": sms}), (email_site, {"email": email})):
            created = await api.post(
                f"/api/v1/groups/{group}/sites",
                json={
                    "site_id": site_id,
                    "name": f"Site {site_id}",
                    "timezone": zone,
                    "region": "AU",
                    "settings": settings,
                },
            )
            assert created.status_code == 201, created.text
        # Request/reply: config → SMS gateway (provider test, queue depth).
        tested = await api.post(f"/api/v1/sites/{sms_site}/provider-test")
        assert tested.status_code == 200, tested.text
        assert tested.json()["ok"] is True, tested.json()
        forecast = await api.get(f"/api/v1/sites/{sms_site}/forecast", params={"messages": 3})
        assert forecast.status_code == 200, forecast.text
        assert "queue_note" not in forecast.json(), "the SMS gateway answered its queue depth"
        submitted = await api.post(
            f"/api/v1/sites/{sms_site}/messages",
            json={
                "channel": "sms",
                "messages": [{"to": number(i), "body": f"Reminder {i}"} for i in range(3)],
            },
        )
        assert submitted.status_code == 202, submitted.text
        sms_ids = [m["message_id"] for m in submitted.json()["messages"]]
        mailed = await api.post(
            f"/api/v1/sites/{email_site}/messages",
            json={
                "channel": "email",
                "messages": [
                    {"to": "patient@example.org", "subject": "Recall", "body": "Time to book."}
                ],
            },
        )
        assert mailed.status_code == 202, mailed.text
        email_ids = [m["message_id"] for m in mailed.json()["messages"]]

        # Manual email: nothing goes until send-now (config → CONTROL → scheduler → tick).
        async def queued_email() -> bool:
            found = await dispatch_types(admin, email_ids)
            return all(found.get(i) for i in email_ids)

        await wait_until(queued_email, timeout=60, interval=0.5, message="email taken in")
        now = await api.post(
            f"/api/v1/sites/{email_site}/send-now", json={"channel": "email", "reason": "test"}
        )
        assert now.status_code == 202, now.text

    wanted = {"stagger.dispatch.sent", "stagger.dispatch.delivered"}

    async def sms_delivered() -> bool:
        found = await dispatch_types(admin, sms_ids)
        return all(wanted <= found.get(i, set()) for i in sms_ids)

    await wait_until(sms_delivered, timeout=90, interval=0.5, message="3 SMS sent and delivered")

    async def email_sent() -> bool:
        found = await dispatch_types(admin, email_ids)
        return all("stagger.dispatch.sent" in found.get(i, set()) for i in email_ids)

    await wait_until(email_sent, timeout=60, interval=0.5, message="the email sent by send-now")
    assert len(sink.journal()) == 1
    assert await metric(services["scheduler"].url, "stagger_scheduler_send_now_total") >= 1
    assert await metric(services["email_gateway"].url, "stagger_ticks_total", channel="email") >= 1

    # The audit service (read-only user) followed all of it.
    async with httpx.AsyncClient(
        base_url=services["audit"].url,
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        trust_env=False,
    ) as audit:

        async def trail_has_deliveries() -> bool:
            response = await audit.get(
                "/api/v1/audit/events", params={"type": "stagger.dispatch.delivered"}
            )
            return response.status_code == 200 and len(response.json()["events"]) >= len(sms_ids)

        await wait_until(trail_has_deliveries, timeout=60, interval=0.5, message="audit trail")

    # Every replica is ready and the config service sees every heartbeat.
    async with httpx.AsyncClient(trust_env=False, timeout=5) as http:

        async def all_healthy() -> bool:
            response = await http.get(f"{services['config'].url}/healthz")
            return response.status_code == 200

        await wait_until(all_healthy, timeout=30, interval=0.5, message="/healthz 200")

    # A staff sign-in under the config user (its session mints and revokes an API token on
    # ACCESS, its events go to access.user.*): sign in, a page, sign out, the cookie refused.
    auditor = await seed_staff(services["config"].env, box, group, "auditor")
    await _console_round_trip(services["config"].url, auditor)


async def _console_round_trip(url: str, user: StaffLogin) -> None:
    import re

    field = re.compile(r'name="csrf_token" value="([^"]+)"')
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as browser:
        signed_in = await sign_in(browser, user)
        assert signed_in.status_code == 303, signed_in.text
        cookie = browser.cookies.get("stagger_console")
        home = await browser.get("/console/")
        assert home.status_code == 200, home.text
        csrf = field.search(home.text)
        assert csrf is not None
        out = await browser.post("/console/logout", data={"csrf_token": csrf.group(1)})
        assert out.status_code == 303
    async with httpx.AsyncClient(base_url=url, timeout=30, trust_env=False) as thief:
        copied = await thief.get("/console/", headers={"Cookie": f"stagger_console={cookie}"})
        assert copied.status_code == 303


async def test_services_connect_with_nats_user_and_password_settings(tmp_path: Path) -> None:
    with standalone(tmp_path / "nats") as server:
        result = provision(server.url)
        assert result.returncode == 0, result.stdout + result.stderr
        with running_services(server, tmp_path / "var", by_settings=True) as services:
            assert sorted(services) == sorted(SERVICE_NAMES)
        assert server.violations() == []
