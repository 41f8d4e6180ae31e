"""End to end through the services `./dev up` runs: config API → scheduler ticks → SMS gateway
→ simulator over HTTP → receipts back by webhook, for a site staggered at one SMS every 2 s."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from shared.bus.topology import DISPATCH
from tests.integration.sms_gateway.harness import events, number
from tests.support.stack import stack_with_group, staggered_sms
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

EVERY_SECONDS = 2.0
# Sends leave the gateway at least 2 s apart (the tick grid and the account's GCRA slots);
# the simulator stamps their arrival, which the HTTP round trip can shift by a few ms.
ARRIVAL_JITTER = 0.05


async def test_ten_staggered_sms_go_two_seconds_apart_and_come_back_delivered(
    tmp_path: Path,
) -> None:
    async with stack_with_group(
        tmp_path, {"STAGGER_LOG_LEVEL": "WARNING"}, receipt_delay=0.2
    ) as running:
        sim_url, nc = running.sim_url, running.nc
        site_id = await running.create_site(staggered_sms(sim_url, EVERY_SECONDS))
        async with running.api() as api:
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
