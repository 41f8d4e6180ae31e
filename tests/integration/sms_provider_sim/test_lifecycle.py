"""Restarts keep credits and messages (state file); SIGTERM stops promptly and cleanly."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.sms_provider_sim.harness import SimProcess, WebhookReceiver, message
from tests.support.waiting import wait_until

DEFAULT_KEY = {"Authorization": "Bearer sim-dev-key"}


async def test_state_file_keeps_credits_and_messages_across_a_restart(tmp_path: Path) -> None:
    state_file = tmp_path / "state" / "sim.json"
    env = {
        "STAGGER_SIM_STATE_FILE": str(state_file),
        "STAGGER_SIM_DEFAULT_CREDITS": "10",
        "STAGGER_SIM_RECEIPT_DELAY_SECONDS": "0",
    }
    first = SimProcess(tmp_path / "first.log", **env)
    await first.start()
    try:
        async with first.client() as client:
            one = await client.post("/v1/messages", json=message("keep-1"), headers=DEFAULT_KEY)
            two = await client.post(
                "/v1/messages", json=message("keep-2", body="z" * 200), headers=DEFAULT_KEY
            )
            assert (one.status_code, two.status_code) == (201, 201)
            topup = await client.post("/v1/topup", json={"amount": 4}, headers=DEFAULT_KEY)
            assert topup.json()["balance"] == 11
            created = await client.put(
                "/v1/admin/accounts/clinic-b", json={"api_key": "clinic-b-key", "credits": 42}
            )
            assert created.status_code == 201

            async def delivered() -> bool:
                r = await client.get(f"/v1/messages/{one.json()['id']}", headers=DEFAULT_KEY)
                return bool(r.json()["status"] == "delivered")

            await wait_until(delivered, message="first message delivered")
    finally:
        assert first.terminate() == 0, first.log()

    saved = json.loads(state_file.read_text())
    assert saved["version"] == 1
    assert not list(state_file.parent.glob("*.tmp")), "no temporary files left behind"

    second = SimProcess(tmp_path / "second.log", **env)
    await second.start()
    try:
        async with second.client() as client:
            assert (await client.get("/v1/balance", headers=DEFAULT_KEY)).json()["balance"] == 11
            found = await client.get(
                "/v1/messages", params={"reference": "keep-1"}, headers=DEFAULT_KEY
            )
            assert found.status_code == 200
            assert found.json()["id"] == one.json()["id"]
            assert found.json()["status"] == "delivered"
            keep2 = await client.get(
                "/v1/messages", params={"reference": "keep-2"}, headers=DEFAULT_KEY
            )
            assert keep2.json()["segments"] == 2
            # Idempotency survives the restart: nothing is sent or debited twice.
            again = await client.post("/v1/messages", json=message("keep-1"), headers=DEFAULT_KEY)
            assert again.status_code == 200
            assert again.json()["duplicate"] is True
            assert (await client.get("/v1/balance", headers=DEFAULT_KEY)).json()["balance"] == 11
            clinic = await client.get(
                "/v1/balance", headers={"Authorization": "Bearer clinic-b-key"}
            )
            assert clinic.json()["balance"] == 42
    finally:
        assert second.terminate() == 0, second.log()


async def test_a_corrupt_state_file_stops_start_up_instead_of_losing_credits(
    tmp_path: Path,
) -> None:
    state_file = tmp_path / "sim.json"
    state_file.write_text("{ half a document")
    process = SimProcess(tmp_path / "sim.log", STAGGER_SIM_STATE_FILE=str(state_file))

    with pytest.raises(AssertionError, match="exited early"):
        await process.start()
    assert process.process is not None
    assert process.process.returncode != 0
    assert state_file.read_text() == "{ half a document", "the file is left for a human"
    assert "cannot load the state file" in process.log()


async def test_sigterm_releases_held_requests_and_pending_webhooks(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    hook = "/hooks/lifecycle-sigterm"
    receiver.fail_next(hook, 1_000)  # the receipt keeps being retried
    process = SimProcess(
        tmp_path / "sim.log",
        STAGGER_SIM_DEFAULT_WEBHOOK_URL=receiver.url(hook),
        STAGGER_SIM_RECEIPT_DELAY_SECONDS="0",
    )
    await process.start()
    async with process.client(timeout=60) as client:
        sent = await client.post("/v1/messages", json=message(), headers=DEFAULT_KEY)
        assert sent.status_code == 201
        await receiver.wait_for(hook, count=2)  # in the back-off between retries now
        await client.put(
            "/v1/admin/faults",
            json={"rate_timeout_after_accept": 1.0, "timeout_hold_seconds": 600},
        )
        held = asyncio.create_task(
            client.post("/v1/messages", json=message("held"), headers=DEFAULT_KEY)
        )

        async def is_held() -> bool:
            log = (await client.get("/v1/admin/submissions", params={"reference": "held"})).json()
            return bool(log) and log[-1]["outcome"] == "accepted_then_timeout"

        await wait_until(is_held, message="request held")
        started = time.monotonic()
        code = await asyncio.to_thread(process.terminate, 15)
        took = time.monotonic() - started

        assert code == 0, process.log()
        assert took < 5, f"shutdown took {took:.1f}s"
        with pytest.raises(httpx.RemoteProtocolError):
            await held
    assert "Traceback" not in process.log()
    assert "sim-dev-key" not in process.log(), "API keys never reach the log"
    assert "message accepted" in process.log()
