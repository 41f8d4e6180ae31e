"""The group dashboard in headless Chromium: both sites of a group on one page, what waits,
what was sent today, a hold and why; a site manager sees only their site."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

import pytest
from playwright.async_api import Page, expect

from services.config.adapters.settings_store import SettingsStore
from shared.bus import subjects
from shared.bus.topology import DISPATCH, PROVIDERS, SETTINGS
from shared.domain.accounts import sms_account_id
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import MessageSent
from shared.events.schemas.providers import SendingHeld
from shared.eventstore import EventStore
from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser


async def test_the_dashboard_shows_every_site_with_holds_and_a_manager_only_theirs(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    gid, plain, sim = group["group_id"], group["site"], group["sim_site"]
    async with stack.config.client(group["admin"]) as api:
        submitted = await api.post(
            f"/api/v1/sites/{sim}/messages",
            json={
                "channel": "sms",
                "messages": [{"to": f"+4477009002{i:02d}", "body": f"Hi {i}"} for i in range(3)],
            },
        )
    assert submitted.status_code == 202, submitted.text

    async def waiting() -> bool:
        reply = await stack.nc.request(
            subjects.rpc("sms_gateway", "queue_depth"), json.dumps({"site_id": sim}).encode()
        )
        return json.loads(reply.data)["queued"] == 3

    # No scheduler in this stack: the messages wait in the gateway's queue.
    await wait_until(waiting, timeout=30, interval=0.2, message="three SMS waiting")
    site = await SettingsStore(EventStore(stack.nc, SETTINGS)).site(sim)
    assert site is not None
    account = sms_account_id(site.settings.sms.provider, gid)
    assert account is not None
    held = SendingHeld(account=account, provider="simulator", reason="no credits left")
    event = make_event(
        held,
        source="sms_gateway",
        actor="service:sms_gateway",
        subject=account,
        group_id=gid,
        site_id=sim,
    )
    await EventStore(stack.nc, PROVIDERS).append(subjects.credits(account), event)
    mid = f"m-{uuid.uuid4().hex[:12]}"
    sent = MessageSent(
        message_id=mid,
        group_id=gid,
        site_id=sim,
        channel="sms",
        account=account,
        sent_at=datetime.now(UTC),
    )
    event = make_event(sent, source="sms_gateway", actor="service:sms_gateway", subject=mid)
    await EventStore(stack.nc, DISPATCH).append(subjects.dispatch("sms", sim), event)

    await login(page, stack.url, group["admin_user"])
    await page.get_by_role("link", name="Dashboard").click()
    row = page.locator(f"#site-{sim}")
    await expect(page.locator("#dashboard tbody tr")).to_have_count(2)
    await expect(page.locator(f"#site-{plain} .status")).to_have_text("Nothing waiting")
    await expect(row.locator(".waiting-sms")).to_have_text("3")
    await expect(row.locator(".status")).to_have_text("Held: no credits left")
    await expect(row.locator(".held-why")).to_have_text("no credits left")
    # The read model counts the send as its projection catches up: reload until it shows.
    for _ in range(50):
        if (await row.locator(".sent-today").text_content() or "").strip() == "1":
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(row.locator(".sent-today")).to_have_text("1")
    await expect(row.locator(".session")).to_contain_text("(Europe/London)")
    # The hold is an alert too (the alert projection decides it as it catches up).
    alert = page.locator("#alerts .alert-sms_held")
    for _ in range(50):
        if await alert.count():
            break
        await page.wait_for_timeout(200)
        await page.reload()
    await expect(alert).to_contain_text("SMS sending is held")
    await expect(alert).to_contain_text("no credits left")
    await screenshot(page, "dashboard")

    manager = await stack.staff(gid, "site_manager", [plain])
    await page.context.clear_cookies()
    await login(page, stack.url, manager)
    await page.goto(f"{stack.url}/console/dashboard")
    await expect(page.locator("#dashboard tbody tr")).to_have_count(1)
    await expect(page.locator(f"#site-{plain}")).to_be_visible()
    await expect(page.locator(f"#site-{sim}")).to_have_count(0)
    # Not their site: not their alert.
    await expect(page.locator("#alerts .alert")).to_have_count(0)
    await expect(page.locator("#alerts")).to_contain_text("No alerts")
