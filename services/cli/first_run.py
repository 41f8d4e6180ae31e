"""The first `stagger up` on an empty var dir: a demo group to try everything with.

Once the services are healthy: the group `demo` with two sites, London (Europe/London) and
Sydney (Australia/Sydney), each sending SMS through the simulator and email through the SMTP
sink that `up` runs beside them, and a one-time sign-in link for the demo group's admin. The
sites are created through the public API (same checks as any site), with a group-admin token
made for the purpose and revoked straight after.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from shared.config import StaggerConfig

PENDING = "first-run.pending"
DEMO_GROUP = "demo"
DEMO_ADMIN = "admin@demo-dental.example"
HEALTH_PATIENCE = 180.0
# Sender numbers from the ranges set aside for drama and examples (Ofcom, ACMA): a number,
# not a name, so patients can reply (and STOP) to the simulator.
DEMO_SITES = (
    ("london", "Demo Dental London", "Europe/London", "UK", "+447700900000"),
    ("sydney", "Demo Dental Sydney", "Australia/Sydney", "AU", "+61491570006"),
)


def mark_if_fresh(var_dir: Path) -> bool:
    """Before start-up: note that this var dir is new, so the demo is made once the services
    run (the note stays until it is made, so an interrupted first run tries again)."""
    fresh = not var_dir.exists() or not any(var_dir.iterdir())
    var_dir.mkdir(parents=True, exist_ok=True)
    if fresh:
        (var_dir / PENDING).write_text("the demo group is created on the next start\n")
    return (var_dir / PENDING).exists()


def site_settings(site_id: str, sender: str, host: str) -> dict[str, Any]:
    """A demo site's settings: the simulator's default account and the SMTP sink."""
    from services.sms_provider_sim.config import SimulatorConfig as SimSettings
    from services.smtp_sink.config import SinkConfig as SinkSettings

    sim, sink = SimSettings(), SinkSettings()
    return {
        "sms": {
            "provider": {
                "kind": "simulator",
                "account_id": sim.default_account,
                "secret": sim.default_api_key.get_secret_value(),
                "base_url": f"http://{host}:{sim.port}",
            },
            "sender_id": sender,
        },
        "email": {
            "enabled": True,
            "address": f"{site_id}@demo-dental.example",
            "display_name": f"Demo Dental {site_id.title()}",
            "smtp": {"host": host, "port": sink.port, "security": "none"},
        },
    }


async def _healthy(base: str) -> None:
    deadline = asyncio.get_running_loop().time() + HEALTH_PATIENCE
    async with httpx.AsyncClient(timeout=3) as http:
        while True:
            try:
                if (await http.get(f"{base}/healthz")).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"the services were not healthy within {HEALTH_PATIENCE:.0f}s")
            await asyncio.sleep(0.5)  # polling /healthz: the services announce nothing else


async def _create_sites(base: str, token: str, host: str) -> None:
    async with httpx.AsyncClient(
        base_url=base, timeout=30, headers={"Authorization": f"Bearer {token}"}
    ) as api:
        existing = await api.get(f"/api/v1/groups/{DEMO_GROUP}/sites")
        have = {row["site_id"] for row in existing.json()} if existing.status_code == 200 else set()
        for site_id, name, zone, region, sender in DEMO_SITES:
            if site_id in have:
                continue
            answer = await api.post(
                f"/api/v1/groups/{DEMO_GROUP}/sites",
                json={
                    "site_id": site_id,
                    "name": name,
                    "timezone": zone,
                    "region": region,
                    "settings": site_settings(site_id, sender, host),
                },
            )
            if answer.status_code != 201:
                raise RuntimeError(f"demo site {site_id} not created: {answer.text[:300]}")


async def create_demo(settings: StaggerConfig, say: Callable[[str], None]) -> None:
    """Make the demo group, its sites and admin, and print the admin's sign-in link."""
    import nats

    from services.cli.admin import ensure_group, invite_first_admin
    from shared.bus.topology import ensure_streams
    from shared.tokens import issue_token, revoke_token

    host = "127.0.0.1" if settings.http_host in ("0.0.0.0", "::") else settings.http_host
    base = f"http://{host}:{settings.http_port}"
    await _healthy(base)
    nc = await nats.connect(settings.nats_servers)
    try:
        await ensure_streams(nc.jetstream(), settings.stream_replicas)
        await ensure_group(
            nc,
            settings,
            DEMO_GROUP,
            "Demo Dental",
            {"profile": {"timezone": "Europe/London", "region": "UK"}},
        )
        token_id, token = await issue_token(
            nc, group_id=DEMO_GROUP, role="group_admin", label="first run", actor="cli:first-run"
        )
        try:
            await _create_sites(base, token, host)
        finally:
            await revoke_token(nc, token_id, reason="first run done", actor="cli:first-run")
        invited = await invite_first_admin(nc, settings, DEMO_GROUP, DEMO_ADMIN, "Demo admin")
    finally:
        await nc.close()
    (settings.var_dir / PENDING).unlink(missing_ok=True)
    (settings.var_dir / "first-run.json").write_text(
        json.dumps({"group": DEMO_GROUP, "admin": DEMO_ADMIN, "at": datetime.now(UTC).isoformat()})
    )
    say(
        f"demo group '{DEMO_GROUP}' ready: sites London and Sydney, SMS through the simulator, "
        "email through the SMTP sink"
    )
    say(f"sign in as the demo admin ({DEMO_ADMIN}) with this one-time link:")
    say(f"    {invited.link}")
