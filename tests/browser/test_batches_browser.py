"""Batches in the console, in headless Chromium: a batch's page shows its counts and progress;
Cancel asks for a confirmation, then every waiting message ends `cancelled` (the SMS gateway
applies the command); an auditor sees the batch but no Cancel."""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.integration.sms_gateway.harness import terminal
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

COUNT = 5


async def _batch(stack: ConsoleStack, token: str, site: str, batch_id: str) -> dict[str, Any]:
    async with stack.config.client(token) as api:
        shown = await api.get(f"/api/v1/sites/{site}/batches/{batch_id}")
    assert shown.status_code == 200, shown.text
    return shown.json()  # type: ignore[no-any-return]


async def test_cancel_a_batch_from_its_page_after_confirming(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    site, admin = group["sim_site"], group["admin"]
    async with stack.config.client(admin) as api:
        submitted = await api.post(
            f"/api/v1/sites/{site}/messages",
            json={
                "channel": "sms",
                "messages": [
                    {"to": f"+4477009001{i:02d}", "body": f"Recall {i}"} for i in range(COUNT)
                ],
            },
        )
    assert submitted.status_code == 202, submitted.text
    batch_id = submitted.json()["batch_id"]
    ids = [m["message_id"] for m in submitted.json()["messages"]]

    async def all_queued() -> bool:
        return (await _batch(stack, admin, site, batch_id))["counts"]["queued"] == COUNT

    # No scheduler runs in this stack: the gateway stores the messages and they wait.
    await wait_until(all_queued, timeout=30, interval=0.2, message="the batch queued")

    await login(page, stack.url, group["auditor_user"])
    await page.goto(f"{stack.url}/console/sites/{site}/batches/{batch_id}")
    await expect(page.locator("#batch-count-queued")).to_have_text(str(COUNT))
    await expect(page.locator("#cancel-batch")).to_have_count(0)

    await page.context.clear_cookies()
    await login(page, stack.url, group["admin_user"])
    await page.goto(f"{stack.url}/console/sites/{site}")
    await page.get_by_role("link", name="Batches").click()
    await page.locator(f"a[href$='/batches/{batch_id}']").click()
    await expect(page.get_by_label(f"0 of {COUNT} finished (0.0%)")).to_have_attribute("value", "0")
    await page.get_by_role("link", name="Cancel the batch…").click()
    await expect(page.locator("#cancel-confirm")).to_contain_text(
        f"Cancel the {COUNT} messages of this batch that have not been sent?"
    )
    await screenshot(page, "batch-cancel-confirm")
    assert (await _batch(stack, admin, site, batch_id))["counts"]["cancelled"] == 0
    await page.get_by_role("button", name=f"Yes, cancel {COUNT} messages").click()
    await expect(page.locator("#batch-notice")).to_have_text(
        f"cancelling {COUNT} waiting messages; any in flight end as the provider answers"
    )

    async def all_cancelled() -> bool:
        return (await _batch(stack, admin, site, batch_id))["counts"]["cancelled"] == COUNT

    await wait_until(all_cancelled, timeout=30, interval=0.2, message="the batch cancelled")
    await page.reload()
    await expect(page.locator("#batch-count-cancelled")).to_have_text(str(COUNT))
    await expect(page.get_by_text("Every message of this batch has an outcome.")).to_be_visible()
    await expect(page.locator("#cancel-batch")).to_have_count(0)
    await screenshot(page, "batch-cancelled")
    # The outbox's latest-batch panel counts the same read model: all five have an outcome.
    await page.goto(f"{stack.url}/console/sites/{site}/outbox")
    await expect(page.get_by_label(f"0 of {COUNT} sent")).to_have_attribute("value", str(COUNT))
    ends = await terminal(stack.nc)
    assert [e.type for i in ids for e in ends[i]] == ["stagger.dispatch.cancelled"] * COUNT
    # The console cancelled as the signed-in person: the command carries them as its actor.
    actor = f"user:{group['admin_user'].user_id}"
    assert all(ends[i][0].actor == actor for i in ids), ends[ids[0]][0].actor
