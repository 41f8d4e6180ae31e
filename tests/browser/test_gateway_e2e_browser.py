"""End to end through the real scheduler, SMS gateway and provider simulator (issue 22):

- **Reset failed** from the console's outbox: a message the provider refused ends `failed`;
  the button makes the gateway send it again as a new message (`retry_of`), which reaches the
  simulator; each message has exactly one terminal event.
- A future **`not_before`**: the message waits in the gateway and goes no earlier.
- An **`expires_at`**: a message still waiting (outside its sessions) when it passes ends
  `expired` and never reaches the simulator.

This module's SMS gateway gives up after one attempt (`STACK_ENV`), so a provider error is a
failure at once instead of after minutes of back-off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from shared.bus.topology import DISPATCH
from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.integration.sms_gateway.harness import events, midday_zone, terminal
from tests.support.processes import ServiceProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

STACK_ENV = {"STAGGER_SMS_GATEWAY_MAX_ATTEMPTS": "1"}
EVERY_DAY = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


async def _site(stack: ConsoleStack, sessions: list[dict[str, Any]]) -> tuple[str, str, str]:
    """A group and an SMS site sending through the simulator, staggered one a second in the
    given sessions, in a zone where it is about midday: (group, admin token, site)."""
    gid = await stack.config.create_group()
    admin = await stack.config.token(gid, "group_admin")
    settings = stack.sim_settings(gid)
    settings["sms"].update(mode="staggered", every_minutes=1 / 60, sessions=sessions)
    created = await stack.config.create_site(
        admin, gid, name="Harbour", timezone=midday_zone(), region="AU", settings=settings
    )
    await stack.listed(admin, gid, created["site_id"])
    return gid, admin, created["site_id"]


OPEN_NOW = [{"days": EVERY_DAY, "start": "08:00", "end": "18:00"}]
CLOSED_NOW = [{"days": EVERY_DAY, "start": "22:00", "end": "23:00"}]


async def _submit(stack: ConsoleStack, admin: str, site: str, **extra: Any) -> str:
    async with stack.config.client(admin) as api:
        submitted = await api.post(
            f"/api/v1/sites/{site}/messages",
            json={
                "channel": "sms",
                "messages": [{"to": "+61491570110", "body": "Your check-up is due.", **extra}],
            },
        )
    assert submitted.status_code == 202, submitted.text
    return str(submitted.json()["messages"][0]["message_id"])


async def _faults(stack: ConsoleStack, **faults: Any) -> None:
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False, timeout=10) as sim:
        answer = await sim.put("/v1/admin/faults", json=faults)
    assert answer.status_code in (200, 204), answer.text


async def _at_simulator(stack: ConsoleStack) -> dict[str, dict[str, Any]]:
    """The simulator's accepted submissions by our reference (message id)."""
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False, timeout=10) as sim:
        answer = await sim.get("/v1/admin/submissions")
    assert answer.status_code == 200, answer.text
    return {s["reference"]: s for s in answer.json() if s.get("outcome") == "accepted"}


async def test_reset_failed_sends_the_failed_message_again_through_the_gateway(
    stack: ConsoleStack, scheduler: ServiceProcess, page: Page
) -> None:
    gid, admin, site = await _site(stack, OPEN_NOW)
    await _faults(stack, rate_5xx=1.0)  # the provider is down: the one attempt fails
    try:
        failed_id = await _submit(stack, admin, site)

        async def failed() -> bool:
            ends = (await terminal(stack.nc)).get(failed_id, [])
            return [e.type for e in ends] == ["stagger.dispatch.failed"]

        await wait_until(failed, timeout=60, interval=0.3, message="the message failed")
    finally:
        await _faults(stack)  # the provider is back
    assert failed_id not in await _at_simulator(stack)

    user = await stack.staff(gid, "group_admin")
    await login(page, stack.url, user)
    await page.goto(f"{stack.url}/console/sites/{site}/outbox")
    await expect(page.locator("#count-failed")).to_have_text("1", timeout=30_000)
    await page.get_by_role("button", name="Reset failed SMS").click()
    await expect(
        page.get_by_text("Asked the SMS gateway to retry the failed messages")
    ).to_be_visible()

    async def retried() -> list[Any]:
        ends = await terminal(stack.nc)
        return [
            e
            for events in ends.values()
            for e in events
            if e.type == "stagger.dispatch.sent" and e.data.site_id == site
        ]

    await wait_until(retried, timeout=60, interval=0.3, message="the retry sent")
    sent = await retried()
    assert len(sent) == 1
    retry_id = sent[0].data.message_id
    assert retry_id != failed_id
    assert retry_id in await _at_simulator(stack), "the retry reached the provider"
    ends = await terminal(stack.nc)
    assert [e.type for e in ends[failed_id]] == ["stagger.dispatch.failed"], "ended once"
    assert [e.type for e in ends[retry_id]] == ["stagger.dispatch.sent"]
    queued = [
        e.data
        for e in await events(stack.nc, DISPATCH)
        if e.type == "stagger.dispatch.queued" and e.data.message_id == retry_id  # type: ignore[attr-defined]
    ]
    assert [q.retry_of for q in queued] == [failed_id]  # type: ignore[attr-defined]
    await page.reload()
    await expect(page.locator("#count-sent")).to_have_text("1", timeout=30_000)
    await screenshot(page, "outbox-reset-failed-sent")


async def test_a_future_not_before_waits_and_then_goes(
    stack: ConsoleStack, scheduler: ServiceProcess
) -> None:
    _, admin, site = await _site(stack, OPEN_NOW)
    not_before = datetime.now(UTC) + timedelta(seconds=6)
    message_id = await _submit(stack, admin, site, not_before=not_before.isoformat())

    async def ended() -> bool:
        return message_id in await terminal(stack.nc)

    await wait_until(ended, timeout=60, interval=0.3, message="the message ended")
    ends = (await terminal(stack.nc))[message_id]
    assert [e.type for e in ends] == ["stagger.dispatch.sent"]
    assert ends[0].data.sent_at >= not_before, (ends[0].data.sent_at, not_before)
    arrived = (await _at_simulator(stack))[message_id]
    assert datetime.fromisoformat(arrived["received_at"]) >= not_before


async def test_an_expires_at_ends_a_waiting_message_expired(
    stack: ConsoleStack, scheduler: ServiceProcess
) -> None:
    _, admin, site = await _site(stack, CLOSED_NOW)
    expires_at = datetime.now(UTC) + timedelta(seconds=3)
    message_id = await _submit(stack, admin, site, expires_at=expires_at.isoformat())

    async def ended() -> bool:
        return message_id in await terminal(stack.nc)

    await wait_until(ended, timeout=60, interval=0.3, message="the message ended")
    ends = (await terminal(stack.nc))[message_id]
    assert [e.type for e in ends] == ["stagger.dispatch.expired"]
    assert ends[0].time >= expires_at
    assert message_id not in await _at_simulator(stack)
