"""Batches through the services `./dev up` runs: submit → the batch's counts from its read model →
cancel midway over the API → the SMS gateway ends every waiting message `cancelled` and the
simulator receives nothing more; each message has exactly one terminal event."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from shared.bus.topology import DISPATCH
from shared.tokens import issue_token
from tests.integration.sms_gateway.harness import events, number, terminal
from tests.support.stack import StackGroup, stack_with_group, staggered_sms
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

EVERY_SECONDS = 1.0
TOTAL = 12


@dataclass
class Running(StackGroup):
    """The stack with a group of two sites, the first of which the batches go to."""

    site_id: str
    other_site: str

    async def token(self, group_id: str, role: str, sites: list[str] | None = None) -> str:
        _, token = await issue_token(
            self.nc,
            group_id=group_id,
            role=role,  # type: ignore[arg-type]
            sites=sites or [],
            label="batches",
        )
        return token

    async def submit(self, count: int, **extra: Any) -> dict[str, Any]:
        async with self.api(self.admin) as api:
            submitted = await api.post(
                f"/api/v1/sites/{self.site_id}/messages",
                json={
                    "channel": "sms",
                    "messages": [
                        {"to": number(i), "body": f"Recall {i}: time for a check-up.", **extra}
                        for i in range(count)
                    ],
                },
            )
        assert submitted.status_code == 202, submitted.text
        return submitted.json()  # type: ignore[no-any-return]

    async def batch(self, batch_id: str) -> dict[str, Any]:
        async with self.api(self.admin) as api:
            shown = await api.get(f"/api/v1/sites/{self.site_id}/batches/{batch_id}")
        assert shown.status_code == 200, shown.text
        return shown.json()  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
async def running(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Running]:
    tmp: Path = tmp_path_factory.mktemp("batches")
    async with stack_with_group(tmp, {"STAGGER_LOG_LEVEL": "WARNING"}) as stack:
        settings = staggered_sms(stack.sim_url, EVERY_SECONDS)
        sites = [await stack.create_site(settings, n) for n in ("High Street", "Market Square")]
        yield Running(**vars(stack), site_id=sites[0], other_site=sites[1])


async def _sim_references(sim_url: str) -> set[str]:
    async with httpx.AsyncClient(base_url=sim_url, trust_env=False, timeout=10) as sim:
        return {s["reference"] for s in (await sim.get("/v1/admin/submissions")).json()}


async def test_cancel_midway_sends_nothing_more_and_every_message_ends_once(
    running: Running,
) -> None:
    submitted = await running.submit(TOTAL)
    batch_id = submitted["batch_id"]
    ids = {m["message_id"] for m in submitted["messages"]}
    first = await running.batch(batch_id)
    assert first["total"] == TOTAL and sum(first["counts"].values()) == TOTAL

    async def some_sent() -> bool:
        return (await running.batch(batch_id))["counts"]["sent"] >= 3

    await wait_until(some_sent, timeout=60, interval=0.2, message="three of the batch sent")
    async with running.api(running.admin) as api:
        cancelled = await api.post(f"/api/v1/sites/{running.site_id}/batches/{batch_id}/cancel")
    assert cancelled.status_code == 202, cancelled.text
    assert cancelled.json()["cancel_requested"] >= 1

    async def finished() -> bool:
        return bool((await running.batch(batch_id))["done"])

    await wait_until(finished, timeout=60, interval=0.2, message="every message ended")
    shown = await running.batch(batch_id)
    counts = shown["counts"]
    assert counts["sent"] + counts["cancelled"] == TOTAL, counts
    assert counts["sent"] >= 3 and counts["cancelled"] >= 1, counts
    assert shown["percent"] == 100.0 and shown["forecast"] is None

    ends = await terminal(running.nc)
    assert all(len(ends.get(i, [])) == 1 for i in ids), "each message ends exactly once"
    sent = {i for i in ids if ends[i][0].type == "stagger.dispatch.sent"}
    assert len(sent) == counts["sent"]
    # Nothing cancelled reached the provider.
    assert await _sim_references(running.sim_url) & ids == sent

    async with running.api(running.admin) as api:
        again = await api.post(f"/api/v1/sites/{running.site_id}/batches/{batch_id}/cancel")
    assert again.status_code == 200, again.text
    assert again.json()["cancel_requested"] == 0
    assert "finished" in again.json()["message"]

    code, out = await _cli(running, "batch", "show", "--json", "--site", running.site_id, batch_id)
    assert code == 0, out
    assert json.loads(out)["counts"] == counts
    code, out = await _cli(running, "batch", "cancel", "--site", running.site_id, batch_id)
    assert (code, out.strip()) == (0, "the batch has finished: nothing to cancel")
    code, out = await _cli(running, "batch", "show", "--site", running.other_site, batch_id)
    assert code == 1 and "no batch" in out


async def _cli(running: Running, *args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "services.cli.main",
        *args,
        env={**os.environ, **running.stack.env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(process.communicate(), timeout=60)
    return process.returncode or 0, out.decode()


async def test_one_message_is_cancelled_and_a_second_cancel_says_it_has_ended(
    running: Running,
) -> None:
    later = (datetime.now(UTC) + timedelta(days=2)).isoformat()
    submitted = await running.submit(3, not_before=later)
    batch_id = submitted["batch_id"]
    one, *rest = [m["message_id"] for m in submitted["messages"]]

    async def queued(n: int) -> bool:
        return (await running.batch(batch_id))["counts"]["queued"] == n

    await wait_until(lambda: queued(3), timeout=60, interval=0.2, message="three queued")
    # The gateway's queued events carry the batch id the outbox messages brought.
    stored = [
        e.data
        for e in await events(running.nc, DISPATCH)
        if e.type == "stagger.dispatch.queued" and e.data.message_id in [one, *rest]  # type: ignore[attr-defined]
    ]
    assert [d.batch_id for d in stored] == [batch_id] * 3  # type: ignore[attr-defined]
    url = f"/api/v1/sites/{running.site_id}/messages/{one}/cancel"
    async with running.api(running.admin) as api:
        first = await api.post(url)
        assert first.status_code == 202, first.text
        await wait_until(lambda: queued(2), timeout=30, interval=0.2, message="one cancelled")
        second = await api.post(url)
        assert second.status_code == 200, second.text
        assert second.json()["state"] == "cancelled"
        rest_cancel = await api.post(f"/api/v1/sites/{running.site_id}/batches/{batch_id}/cancel")
        assert rest_cancel.json()["cancel_requested"] == 2
    await wait_until(lambda: queued(0), timeout=30, interval=0.2, message="all cancelled")
    assert (await running.batch(batch_id))["counts"]["cancelled"] == 3
    ends = await terminal(running.nc)
    assert [e.type for i in [one, *rest] for e in ends[i]] == ["stagger.dispatch.cancelled"] * 3


async def test_unknown_batch_404_bad_id_422_and_other_tenants_see_nothing(
    running: Running,
) -> None:
    submitted = await running.submit(
        1, not_before=(datetime.now(UTC) + timedelta(days=2)).isoformat()
    )
    batch_id = submitted["batch_id"]
    base = f"/api/v1/sites/{running.site_id}/batches"
    async with running.api(running.admin) as api:
        unknown = await api.get(f"{base}/{uuid.uuid4()}")
        assert unknown.status_code == 404, unknown.text
        bad = await api.post(f"{base}/not-a-batch/cancel")
        assert bad.status_code == 422, bad.text
        assert "batch_id" in bad.text
        # The batch is the first site's: asked for under the second site, it is not there.
        elsewhere = await api.get(f"/api/v1/sites/{running.other_site}/batches/{batch_id}")
        assert elsewhere.status_code == 404, elsewhere.text
        listed = await api.get(base)
        assert batch_id in [b["batch_id"] for b in listed.json()]

    other_group = f"g-{secrets.token_hex(3)}"
    stranger = await running.token(other_group, "group_admin")
    other_manager = await running.token(running.group_id, "site_manager", [running.other_site])
    own_manager = await running.token(running.group_id, "site_manager", [running.site_id])
    auditor = await running.token(running.group_id, "auditor")
    for token in (stranger, other_manager):
        async with running.api(token) as api:
            assert (await api.get(f"{base}/{batch_id}")).status_code == 404
            assert (await api.post(f"{base}/{batch_id}/cancel")).status_code == 404
    async with running.api(auditor) as api:
        assert (await api.get(f"{base}/{batch_id}")).status_code == 200
        assert (await api.post(f"{base}/{batch_id}/cancel")).status_code == 403
    async with running.api(own_manager) as api:
        assert (await api.post(f"{base}/{batch_id}/cancel")).status_code in (200, 202)
