"""End to end through the services `./dev up` runs: config API → scheduler ticks → SMS gateway
→ simulator over HTTP → receipts back by webhook, for a site staggered at one SMS every 2 s."""

from __future__ import annotations

import contextlib
import itertools
import secrets
from datetime import UTC, datetime
from pathlib import Path

import httpx
import nats
import pytest

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus.topology import DISPATCH, SETTINGS
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.integration.sms_gateway.harness import events, midday_zone, number
from tests.integration.sms_provider_sim.harness import SimProcess
from tests.support.stack import start_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

EVERY_SECONDS = 2.0
# Sends leave the gateway at least 2 s apart (the tick grid and the account's GCRA slots);
# the simulator stamps their arrival, which the HTTP round trip can shift by a few ms.
ARRIVAL_JITTER = 0.05


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=1) as http:
            return (await http.get(f"{url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def test_ten_staggered_sms_go_two_seconds_apart_and_come_back_delivered(
    tmp_path: Path,
) -> None:
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    stack = start_stack(
        tmp_path / "var",
        {
            "STAGGER_SIM_PORT": str(sim_port),
            "STAGGER_SIM_RECEIPT_DELAY_SECONDS": "0.2",
            "STAGGER_LOG_LEVEL": "WARNING",
        },
        # The demo group's sites use the simulator's default account; this test's group does.
        demo=False,
    )
    own_sim: SimProcess | None = None
    try:
        await wait_until(
            lambda: (r := stack.healthz()) is not None and r.status_code == 200,
            timeout=90,
            interval=0.5,
            message="/healthz 200",
        )
        gateway = f"http://127.0.0.1:{stack.env['STAGGER_SMS_GATEWAY_HTTP_PORT']}"
        with contextlib.suppress(AssertionError):
            await wait_until(lambda: _answers(sim_url), timeout=5, message="the stack's sim")
        if not await _answers(sim_url):
            # This stack does not run the simulator itself: run it as `./dev up` would.
            own_sim = SimProcess(
                tmp_path / "sim.log",
                STAGGER_SIM_DEFAULT_WEBHOOK_URL=f"{gateway}/webhooks/sms/simulator",
                STAGGER_SIM_RECEIPT_DELAY_SECONDS="0.2",
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
            _, token = await issue_token(nc, group_id=group, role="group_admin", label="e2e")
            site_id = f"s-{secrets.token_hex(3)}"
            settings = {
                "sms": {
                    "provider": {
                        "kind": "simulator",
                        "account_id": "sim-default",
                        "secret": "sim-dev-key",
                        "base_url": sim_url,
                        "rate_per_second": 1 / EVERY_SECONDS,
                    },
                    "sender_id": "+61491570999",
                    "mode": "staggered",
                    "every_minutes": EVERY_SECONDS / 60,
                    "sessions": [
                        {
                            "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                            "start": "08:00",
                            "end": "18:00",
                        }
                    ],
                }
            }
            async with httpx.AsyncClient(
                base_url=stack.base_url,
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
                trust_env=False,
            ) as api:
                created = await api.post(
                    f"/api/v1/groups/{group}/sites",
                    json={
                        "site_id": site_id,
                        "name": "High Street",
                        "timezone": midday_zone(),
                        "region": "AU",
                        "settings": settings,
                    },
                )
                assert created.status_code == 201, created.text
                tested = await api.post(f"/api/v1/sites/{site_id}/provider-test")
                assert tested.status_code == 200, tested.text
                assert tested.json()["ok"] is True and tested.json()["unit"] == "credits"
                submitted = await api.post(
                    f"/api/v1/sites/{site_id}/messages",
                    json={
                        "channel": "sms",
                        "messages": [
                            {"to": number(i), "body": f"Reminder {i}: check-up on Monday."}
                            for i in range(10)
                        ],
                    },
                )
                assert submitted.status_code == 202, submitted.text
                ids = [m["message_id"] for m in submitted.json()["messages"]]
                assert {m["credits"] for m in submitted.json()["messages"]} == {1}

            async with httpx.AsyncClient(base_url=sim_url, trust_env=False, timeout=10) as sim:

                async def arrived() -> list[dict]:
                    found = (await sim.get("/v1/admin/submissions")).json()
                    return [s for s in found if s["reference"] in ids]

                await wait_until(
                    lambda: _count(arrived, 10), timeout=90, interval=0.5, message="10 sends"
                )
                sends = await arrived()

            async def fates() -> dict[str, set[str]]:
                found: dict[str, set[str]] = {}
                for e in await events(nc, DISPATCH):
                    if getattr(e.data, "message_id", None) in ids:
                        found.setdefault(e.data.message_id, set()).add(e.type)
                return found

            await wait_until(
                lambda: _all_delivered(fates, ids), timeout=30, message="sent and delivered"
            )
        finally:
            await nc.close()
    finally:
        if own_sim is not None:
            own_sim.terminate()
        stack.interrupt()
    assert sorted(s["reference"] for s in sends) == sorted(ids)
    assert {s["outcome"] for s in sends} == {"accepted"}
    times = sorted(datetime.fromisoformat(s["received_at"]) for s in sends)
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    assert min(gaps) >= EVERY_SECONDS - ARRIVAL_JITTER, gaps
    assert times[-1] <= datetime.now(UTC)


async def _count(arrived, n: int) -> bool:
    return len(await arrived()) >= n


async def _all_delivered(fates, ids: list[str]) -> bool:
    found = await fates()
    wanted = {"stagger.dispatch.sent", "stagger.dispatch.delivered"}
    return all(wanted <= found.get(i, set()) for i in ids)
