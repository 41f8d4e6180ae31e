"""Must-show of docs/privacy.md: send an SMS through the whole stack, opt the number out,
erase it, and find neither the number nor the body in NATS's data dir, the SQLite files or the
logs; the audit chain still verifies and the number stays suppressed."""

from __future__ import annotations

import contextlib
import secrets
import subprocess
import sys
from pathlib import Path

import httpx
import nats
import pytest
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus.topology import DISPATCH, OPTOUTS, SETTINGS
from shared.eventstore import EventStore
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.integration.sms_gateway.harness import events, midday_zone
from tests.integration.sms_provider_sim.harness import SimProcess
from tests.support.stack import StackProcess, start_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow


async def _answers(url: str) -> bool:
    try:
        async with httpx.AsyncClient(trust_env=False, timeout=1) as http:
            return (await http.get(f"{url}/healthz")).status_code == 200
    except httpx.HTTPError:
        return False


async def _types(nc: Client, stream: str, message_id: str) -> set[str]:
    return {
        e.type for e in await events(nc, stream) if getattr(e.data, "message_id", "") == message_id
    }


def _leaks(var_dir: Path, needles: list[bytes]) -> list[str]:
    """Files of Stagger's own under `var_dir` holding any needle (the simulator's files are
    the phone network's, not ours, and are left out)."""
    found = []
    for path in var_dir.rglob("*"):
        if not path.is_file() or "sim" in path.name:
            continue
        raw = path.read_bytes()
        found += [f"{path.relative_to(var_dir)}: {n!r}" for n in needles if n in raw]
    return found


async def test_an_erased_number_and_body_are_nowhere_and_stay_suppressed(tmp_path: Path) -> None:
    sim_port = free_port()
    sim_url = f"http://127.0.0.1:{sim_port}"
    var_dir = tmp_path / "var"
    stack: StackProcess = start_stack(
        var_dir,
        {"STAGGER_SIM_PORT": str(sim_port), "STAGGER_SIM_RECEIPT_DELAY_SECONDS": "0.2"},
        demo=False,
    )
    own_sim: SimProcess | None = None
    phone = f"+614{secrets.randbelow(10**8):08d}"
    body = f"Private note {secrets.token_hex(6)}: your check-up is on Monday."
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
            await ConfigHandlers(
                nc,
                SettingsStore(EventStore(nc, SETTINGS)),
                SecretBox([generate_key().encode()]),
                None,
                simulator_enabled=True,
            ).create_group(group, "Smile Group", {}, actor="test:operator")
            _, token = await issue_token(nc, group_id=group, role="group_admin", label="privacy")
            site_id = f"s-{secrets.token_hex(3)}"
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
                        "settings": {
                            "sms": {
                                "provider": {
                                    "kind": "simulator",
                                    "account_id": "sim-default",
                                    "secret": "sim-dev-key",
                                    "base_url": sim_url,
                                },
                                "sender_id": "+61491570999",
                                "mode": "immediate",
                            }
                        },
                    },
                )
                assert created.status_code == 201, created.text

                async def send() -> str:
                    submitted = await api.post(
                        f"/api/v1/sites/{site_id}/messages",
                        json={"channel": "sms", "messages": [{"to": phone, "body": body}]},
                    )
                    assert submitted.status_code == 202, submitted.text
                    return str(submitted.json()["messages"][0]["message_id"])

                first = await send()
                await wait_until(
                    lambda: _has(nc, first, "stagger.dispatch.delivered"),
                    timeout=60,
                    message="sent and delivered",
                )
                # The patient replies STOP: the number is on the group's list.
                async with httpx.AsyncClient(base_url=sim_url, trust_env=False) as sim:
                    stop = await sim.post(
                        "/v1/admin/inbound",
                        json={
                            "account": "sim-default",
                            "from": phone,
                            "to": "+61491570999",
                            "body": "STOP",
                        },
                    )
                    assert stop.status_code == 202, stop.text
                await wait_until(lambda: _opted_out(nc), timeout=30, message="the opt-out recorded")

                erased = await api.post(
                    f"/api/v1/groups/{group}/erasures", json={"recipient": phone}
                )
                assert erased.status_code == 200, erased.text
                assert erased.json()["keys_erased"] >= 2
                again = await api.post(
                    f"/api/v1/groups/{group}/erasures", json={"recipient": phone}
                )
                assert again.status_code == 200 and again.json()["already_erased"] is True
                assert phone not in erased.text + again.text

                # Still suppressed after the erasure: the list kept the salted hash.
                second = await send()
                await wait_until(
                    lambda: _has(nc, second, "stagger.dispatch.suppressed"),
                    timeout=60,
                    message="the second message suppressed",
                )
            audit_env = {**stack.env, "STAGGER_VAR_DIR": str(var_dir)}
            verify = [sys.executable, "-m", "services.cli.main", "audit", "verify"]
            checked = subprocess.run(
                verify, env=audit_env, capture_output=True, text=True, check=False
            )
            assert checked.returncode == 0, checked.stdout + checked.stderr
        finally:
            await nc.close()
    finally:
        if own_sim is not None:
            own_sim.terminate()
        stack.interrupt()
    needles = [phone.encode(), phone[1:].encode(), body.encode(), body[:20].encode()]
    assert _leaks(var_dir, needles) == []
    ours = [line for line in stack.lines if "sms_provider_sim" not in line and "sim " not in line]
    assert [line for line in ours if phone[1:] in line or body[:20] in line] == []


async def _has(nc: Client, message_id: str, event_type: str) -> bool:
    return event_type in await _types(nc, DISPATCH, message_id)


async def _opted_out(nc: Client) -> bool:
    return any(e.type == "stagger.optout.opted_out" for e in await events(nc, OPTOUTS))
