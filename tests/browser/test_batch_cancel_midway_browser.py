"""Cancel a 1,000-message staggered batch midway from the console, in headless Chromium.

The module's stack (config, audit, SMS gateway, simulator) gets a real scheduler, so the batch
goes out one message a second (the fastest staggered spacing). A group admin opens the batch,
presses Cancel and confirms; then nothing more reaches the simulator, and the batch's page
shows N sent and 1,000 − N cancelled, each message with exactly one terminal event.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from shared.domain.numbers import for_people
from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.integration.sms_gateway.harness import midday_zone, terminal
from tests.support.processes import ServiceProcess
from tests.support.waiting import wait_until

pytestmark = [pytest.mark.browser, pytest.mark.slow]

TOTAL = 1000
SENT_BEFORE_CANCEL = 3


async def _batch(stack: ConsoleStack, token: str, site: str, batch_id: str) -> dict[str, Any]:
    async with stack.config.client(token) as api:
        shown = await api.get(f"/api/v1/sites/{site}/batches/{batch_id}")
    assert shown.status_code == 200, shown.text
    return shown.json()  # type: ignore[no-any-return]


async def _at_simulator(stack: ConsoleStack, ids: set[str]) -> set[str]:
    """Which of `ids` the simulator has received (its own record of submissions)."""
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False, timeout=10) as sim:
        answer = await sim.get("/v1/admin/submissions")
    assert answer.status_code == 200, answer.text
    return {s["reference"] for s in answer.json()} & ids


async def test_cancel_a_staggered_batch_of_1000_midway(
    stack: ConsoleStack, scheduler: ServiceProcess, page: Page
) -> None:
    gid = await stack.config.create_group()
    admin = await stack.config.token(gid, "group_admin")
    settings = stack.sim_settings(gid)
    settings["sms"].update(
        mode="staggered",
        every_minutes=1 / 60,  # one message a second: the fastest staggered spacing
        sessions=[
            {
                "days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
                "start": "08:00",
                "end": "18:00",
            }
        ],
    )
    settings["sms"]["provider"]["rate_per_second"] = 5
    created = await stack.config.create_site(
        admin, gid, name="Recall", timezone=midday_zone(), region="AU", settings=settings
    )
    site = created["site_id"]
    await stack.listed(admin, gid, site)
    user = await stack.staff(gid, "group_admin")
    async with stack.config.client(admin) as api:
        submitted = await api.post(
            f"/api/v1/sites/{site}/messages",
            json={
                "channel": "sms",
                "messages": [
                    {"to": f"+614{i:08d}", "body": f"Recall {i}: time for a check-up."}
                    for i in range(TOTAL)
                ],
            },
        )
    assert submitted.status_code == 202, submitted.text
    batch_id = submitted.json()["batch_id"]
    ids = {m["message_id"] for m in submitted.json()["messages"]}
    assert len(ids) == TOTAL

    await login(page, stack.url, user)
    await page.goto(f"{stack.url}/console/sites/{site}/batches/{batch_id}")
    await expect(page.locator("#batch-h")).to_contain_text("1,000 SMS messages")

    async def some_sent() -> bool:
        return len(await _at_simulator(stack, ids)) >= SENT_BEFORE_CANCEL

    await wait_until(some_sent, timeout=90, interval=0.3, message="the first sends arrived")
    await page.reload()
    await page.get_by_role("link", name="Cancel the batch…").click()
    await expect(page.locator("#cancel-confirm")).to_contain_text("messages of this batch")
    await page.locator("#cancel-yes").click()
    await expect(page.locator("#batch-notice")).to_contain_text("cancelling")

    async def finished() -> bool:
        return bool((await _batch(stack, admin, site, batch_id))["done"])

    await wait_until(finished, timeout=90, interval=0.3, message="every message ended")
    shown = await _batch(stack, admin, site, batch_id)
    sent, cancelled = shown["counts"]["sent"], shown["counts"]["cancelled"]
    assert sent >= SENT_BEFORE_CANCEL and sent + cancelled == TOTAL, shown["counts"]
    assert cancelled > TOTAL // 2, "cancelled midway, not at the end"

    # Every message has ended, so the gateway holds nothing it could still send: what the
    # simulator has now is all it will ever get, and it is exactly the sent ones.
    ends = await terminal(stack.nc)
    assert all(len(ends.get(i, [])) == 1 for i in ids), "each message ends exactly once"
    sent_ids = {i for i in ids if ends[i][0].type == "stagger.dispatch.sent"}
    assert len(sent_ids) == sent
    assert await _at_simulator(stack, ids) == sent_ids

    await page.reload()
    await expect(page.locator("#batch-count-sent")).to_have_text(for_people(sent))
    await expect(page.locator("#batch-count-cancelled")).to_have_text(for_people(cancelled))
    await expect(page.get_by_text("Every message of this batch has an outcome.")).to_be_visible()
    await expect(page.locator("#cancel-batch")).to_have_count(0)
    await screenshot(page, "batch-1000-cancelled-midway")
