"""The console in headless Chromium: the wizard end to end, the provider test, the forecast,
roles, the outbox/credits/replies/opt-out/audit pages, phone width and the keyboard."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from shared.bus import subjects
from shared.bus.topology import CONTROL, DISPATCH, INBOUND, PROVIDERS
from shared.domain.accounts import sms_account_id
from shared.domain.site_settings import SmsProvider
from shared.events.envelope import EventData, make_event
from shared.events.schemas.dispatch import (
    MessageFailed,
    MessageQueued,
    MessageSent,
    Release,
)
from shared.events.schemas.providers import CreditBalanceReported
from shared.events.schemas.replies import ReplyReceived
from shared.eventstore import EventStore
from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.support.processes import start_service
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser


async def open_step(page: Page, stack: ConsoleStack, site: str, step: str) -> None:
    await page.goto(f"{stack.url}/console/sites/{site}/wizard/{step}")


async def next_screen(page: Page, title: str) -> None:
    await page.get_by_role("button", name="Next", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name=title)).to_be_visible()


# --- the wizard ---------------------------------------------------------------------------


async def test_walk_the_whole_wizard_for_a_new_site_and_finish(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    site = (await stack.config.create_site(group["admin"], group["group_id"], name="Harbour"))[
        "site_id"
    ]
    await stack.listed(group["admin"], group["group_id"], site)
    events_before = await stack.site_events(site)
    await login(page, stack.url, group["admin_user"])
    await page.get_by_role("link", name="Harbour").click()
    await page.get_by_role("link", name="Open the setup wizard").click()

    await expect(
        page.get_by_role("heading", level=1, name="Welcome to the setup wizard")
    ).to_be_visible()
    await screenshot(page, "wizard-1-welcome")
    await next_screen(page, "Account details")

    await expect(page.get_by_label("Disable email sending and receiving")).not_to_be_checked()
    await page.get_by_label("Practice email address").fill("reception@harbour.example")
    await page.get_by_label("Display name").fill("Harbour Dental")
    await page.get_by_label("Outgoing mail server (SMTP)").fill("smtp.harbour.example")
    await page.get_by_label("User name", exact=True).fill("reception@harbour.example")
    await page.get_by_label("Password", exact=True).fill("s3cret-smtp")
    await screenshot(page, "wizard-2-account-details")
    await next_screen(page, "Scheduled send and receive")

    await expect(
        page.get_by_text("IMPORTANT: ensure that scheduled network backup")
    ).to_be_visible()
    await expect(page.get_by_label("Preset check times (not recommended)")).to_be_visible()
    await page.get_by_label("Perform regular checks every X minutes").fill("10")
    backup = page.get_by_role("group", name="Backup window (nothing is sent)")
    await backup.get_by_label("Sat").check()
    await backup.get_by_label("From").fill("01:00")
    await backup.get_by_label("To").fill("03:00")
    await backup.get_by_role("button", name="+1: add this window").click()
    await expect(backup.get_by_text("Sat 01:00–03:00")).to_be_visible()
    await screenshot(page, "wizard-3-scheduled-send-and-receive")
    await next_screen(page, "Add a delay between sending each email")

    await expect(page.get_by_text("3 per minute (120 per hour) or 8 per minute")).to_be_visible()
    await expect(page.get_by_text("Manual sending overrides the delay")).to_be_visible()
    await page.get_by_label("Emails per minute").fill("8")
    await screenshot(page, "wizard-4-delay-between-emails")
    await next_screen(page, "Open email attachments directly")

    await expect(page.get_by_label("Open email attachments directly")).not_to_be_checked()
    await screenshot(page, "wizard-5-open-attachments")
    await next_screen(page, "SMS provider")

    await page.get_by_label("SMS provider", exact=True).select_option("simulator")
    await page.get_by_label("Practice ID (account)").fill("sim-default")
    await page.get_by_label("Password (API key or auth token)").fill("sim-dev-key")
    await page.get_by_label("Provider address (URL)").fill(stack.sim.url)
    await page.get_by_label("Sender ID").fill("Harbour")
    await screenshot(page, "wizard-6-sms-provider")
    await next_screen(page, "SMS sending")

    every = page.get_by_label("A message should be sent every X minutes")
    await page.get_by_label("Send all SMS when the list is generated").check()
    await expect(every).to_be_disabled()  # "other options are greyed out"
    await page.get_by_label("Enable staggered SMS sending").check()
    await expect(every).to_be_enabled()
    await every.fill("3")
    await page.get_by_label("Warn me if the sending will take longer than X days").fill("5")
    await expect(page.locator("#forecast")).to_contain_text("messages can be sent in the next")
    await screenshot(page, "wizard-7-sms-sending")
    await next_screen(page, "Finish")

    changes = page.get_by_role("table", name="Changes to save")
    await expect(changes).to_contain_text("email.address")
    await expect(changes).to_contain_text("sms.provider.kind")
    await expect(changes).not_to_contain_text("s3cret-smtp")
    await screenshot(page, "wizard-8-finish")
    assert await stack.site_events(site) == events_before  # nothing saved before Finish
    await page.get_by_role("button", name="Finish", exact=True).click()

    await expect(page.get_by_text("Saved: the settings are now at version")).to_be_visible()
    assert await stack.site_events(site) == events_before + 1
    async with stack.config.client(group["admin"]) as api:
        saved = (await api.get(f"/api/v1/sites/{site}")).json()["settings"]
    assert saved["email"]["address"] == "reception@harbour.example"
    assert saved["email"]["smtp"]["password"] == "********"
    assert saved["email"]["per_minute"] == 8
    assert saved["email"]["check_every_minutes"] == 10
    assert saved["blackouts"] == [{"days": ["sat"], "start": "01:00", "end": "03:00"}]
    assert saved["sms"]["provider"]["kind"] == "simulator"
    assert saved["sms"]["provider"]["account_id"] == "sim-default"
    assert saved["sms"]["mode"] == "staggered"


async def test_add_and_delete_a_session_and_see_the_forecast_change(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    site = group["site"]
    await login(page, stack.url, group["admin_user"])
    await open_step(page, stack, site, "sms")
    await page.evaluate("window.__stayed = 'yes'")  # survives only if the page is not reloaded
    await page.get_by_label("Messages in a batch").fill("5000")
    await page.get_by_label("In the next … days").fill("7")
    await page.get_by_label("In the next … days").press("Tab")
    await expect(page.locator("#forecast")).to_contain_text("of 5,000 messages can be sent")
    fits = page.locator("#forecast-fits")
    before = int(await fits.inner_text())
    assert before > 0

    sessions = page.get_by_role("group", name="Delivery times")
    await sessions.get_by_label("Sat").check()
    await sessions.get_by_label("From").fill("09:00")
    await sessions.get_by_label("To").fill("13:00")
    await sessions.get_by_role("button", name="+1: add this session").click()
    listed = page.get_by_role("list", name="Delivery times")
    await expect(listed).to_contain_text("Sat 09:00–13:00")
    # The forecast came in the same partial update as the list. Four more hours a week at one
    # message every 3 minutes: about 80 more within the 7 days (±1 for where "now" falls).
    added = int(await fits.inner_text())
    assert 78 <= added - before <= 82, (before, added)
    await screenshot(page, "forecast-after-adding-a-session")

    await page.get_by_role("button", name="Delete Sat 09:00–13:00").click()
    await expect(listed).not_to_contain_text("Sat")
    assert abs(int(await fits.inner_text()) - before) <= 1
    assert await page.evaluate("window.__stayed") == "yes"  # partial updates, no reload

    # The warning when sending takes too long, recalculated on change.
    await page.get_by_label("Warn me if the sending will take longer than X days").fill("1")
    await page.get_by_label("Warn me if the sending will take longer than X days").press("Tab")
    await expect(page.locator("#forecast-warning")).to_contain_text("this site warns after 1 day")


async def test_press_test_and_see_the_simulators_credits(stack: ConsoleStack, page: Page) -> None:
    group = await stack.group()
    site = group["sim_site"]
    await login(page, stack.url, group["admin_user"])
    await open_step(page, stack, site, "provider")
    await expect(page.get_by_label("Practice ID (account)")).to_be_editable()
    await page.get_by_role("button", name="Test", exact=True).click()
    result = page.locator("#provider-test")
    await expect(result).to_contain_text("Test succeeded", timeout=30_000)
    await expect(result).to_contain_text("1,000 credits")  # SIM_CREDITS, written for people
    await screenshot(page, "provider-test-succeeded")
    # A successful test greys out the Practice ID, as in the seed.
    await page.reload()
    await expect(page.get_by_label("Practice ID (account)")).not_to_be_editable()
    # Changing the provider in the draft: Test asks to Finish first instead.
    await page.get_by_label("Sender ID").fill("Other")
    await page.get_by_label("Password (API key or auth token)").fill("another-key")
    await page.get_by_role("button", name="Test", exact=True).click()
    await expect(result).to_contain_text("Finish first")


async def test_each_provider_shows_its_own_fields_and_its_balance(
    stack: ConsoleStack, page: Page
) -> None:
    """ClickSend (against the simulator's ClickSend dialect): its own field names, no
    automatic top-up, and a Test showing money; Twilio asks for no webhook secret."""
    group = await stack.group()
    name, key = f"cs-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False) as http:
        created = await http.put(
            f"/v1/admin/accounts/{name}",
            json={"api_key": key, "credits": 42.5, "dialect": "clicksend"},
        )
    assert created.status_code == 201, created.text
    settings = {
        "sms": {
            "provider": {
                "kind": "clicksend",
                "account_id": name,
                "secret": key,
                "webhook_secret": uuid.uuid4().hex,
                "base_url": f"{stack.sim.url}/clicksend",
            },
            "sender_id": "+61491570999",
        }
    }
    site = (
        await stack.config.create_site(
            group["admin"], group["group_id"], name="Bayside", settings=settings
        )
    )["site_id"]
    await stack.listed(group["admin"], group["group_id"], site)
    await login(page, stack.url, group["admin_user"])
    await open_step(page, stack, site, "provider")
    await expect(page.get_by_label("Username", exact=True)).to_have_value(name)
    await expect(page.get_by_label("Webhook secret")).to_be_visible()
    await expect(page.get_by_label("Webhook sources (optional)")).to_be_visible()
    await expect(page.get_by_label("Automatic top-up amount")).to_have_count(0)
    await page.get_by_role("button", name="Test", exact=True).click()
    result = page.locator("#provider-test")
    await expect(result).to_contain_text("Test succeeded", timeout=30_000)
    await expect(result).to_contain_text("42.50 AUD")
    await screenshot(page, "provider-test-clicksend")
    # Choosing Twilio swaps in its fields: it signs with the auth token, no webhook secret.
    await page.get_by_label("SMS provider", exact=True).select_option("twilio")
    await expect(page.get_by_label("Account SID")).to_be_visible()
    await expect(page.get_by_label("Auth Token")).to_be_visible()
    await expect(page.get_by_label("Webhook secret")).to_have_count(0)
    await expect(page.get_by_label("Webhook sources (optional)")).to_have_count(0)


# --- roles --------------------------------------------------------------------------------


async def test_a_site_manager_cannot_see_another_sites_pages(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    mine, theirs = group["site"], group["sim_site"]
    manager = await stack.staff(group["group_id"], "site_manager", [mine])
    await login(page, stack.url, manager)
    sites = page.get_by_role("table", name="Your sites")
    await expect(sites).to_contain_text("High Street")
    await expect(sites).not_to_contain_text("Riverside")
    for path in (
        f"/sites/{theirs}",
        f"/sites/{theirs}/wizard/sms",
        f"/sites/{theirs}/outbox",
        f"/sites/{theirs}/replies",
    ):
        answer = await page.goto(f"{stack.url}/console{path}")
        assert answer is not None and answer.status == 404, path
        await expect(page.get_by_role("heading", level=1, name="Not found")).to_be_visible()
        await expect(page.locator("main")).not_to_contain_text("Riverside")
    answer = await page.goto(f"{stack.url}/console/sites/{mine}/wizard/sms")
    assert answer is not None and answer.status == 200


async def test_an_auditor_sees_no_write_controls(stack: ConsoleStack, page: Page) -> None:
    group = await stack.group()
    await login(page, stack.url, group["auditor_user"])
    await page.goto(f"{stack.url}/console/sites/{group['sim_site']}")
    await expect(page.get_by_role("heading", name="SMS provider")).to_be_visible()
    await expect(page.get_by_role("link", name="Open the setup wizard")).to_have_count(0)
    await expect(page.get_by_role("button", name="Send now")).to_have_count(0)
    await page.goto(f"{stack.url}/console/sites/{group['sim_site']}/outbox")
    await expect(page.get_by_role("heading", name="Messages by state")).to_be_visible()
    await expect(page.get_by_role("button", name=re.compile("Reset failed"))).to_have_count(0)


# --- outbox, credits, replies, opt-outs, audit ---------------------------------------------


async def publish(stack: ConsoleStack, stream: str, to: str, data: EventData, **kw: Any) -> None:
    """Append an event as a gateway would (the console only reads these through audit)."""
    event = make_event(data, source="sms_gateway", actor="service:sms_gateway", **kw)
    await EventStore(stack.nc, stream).append(to, event)


async def test_outbox_credits_replies_optouts_and_audit(stack: ConsoleStack, page: Page) -> None:
    group = await stack.group()
    gid, site = group["group_id"], group["sim_site"]
    ids = [f"m-{uuid.uuid4().hex[:12]}" for _ in range(5)]
    now = datetime.now(UTC)
    common = {"group_id": gid, "site_id": site, "channel": "sms"}
    where = {"group_id": gid, "site_id": site}
    outbox = subjects.dispatch("sms", site)
    for i, mid in enumerate(ids):
        queued = MessageQueued(message_id=mid, to=f"+4477009000{i:02d}", submitted_at=now, **common)
        await publish(stack, DISPATCH, outbox, queued, subject=mid, **where)
    for mid in ids[:2]:
        release = Release(tick_id="t-1", scheduled_at=now, reason="session tick")
        sent = MessageSent(
            message_id=mid, account="acct", sent_at=now, released_by=release, **common
        )
        await publish(stack, DISPATCH, outbox, sent, subject=mid, **where)
    failed = MessageFailed(
        message_id=ids[2], reason="provider refused the number", attempts=3, **common
    )
    await publish(stack, DISPATCH, outbox, failed, subject=ids[2], **where)
    account = sms_account_id(
        SmsProvider(kind="simulator", account_id=stack.sim_account(gid), base_url=stack.sim.url),
        gid,
    )
    assert account is not None
    for minutes, balance in ((50, 400.0), (30, 250.0), (5, 60.0)):
        report = CreditBalanceReported(
            account=account, provider="simulator", balance=balance, unit="credits", source="send"
        )
        event = make_event(
            report,
            source="sms_gateway",
            actor="service:sms_gateway",
            subject=account,
            time=now - timedelta(minutes=minutes),
            **where,
        )
        await EventStore(stack.nc, PROVIDERS).append(subjects.credits(account), event)
    reply = ReplyReceived(
        provider="simulator",
        provider_inbound_id="in-1",
        from_number="+447700900003",
        to="Harbour",
        body="Running 10 minutes late, sorry",
        received_at=now,
        in_reply_to=ids[3],
        kind="unmatched",
        **where,
    )
    await publish(stack, INBOUND, subjects.replies(site), reply, subject="in-1", **where)
    await audit_has(stack, group["admin"], site, 10)

    await login(page, stack.url, group["admin_user"])
    await page.goto(f"{stack.url}/console/sites/{site}/outbox")
    await expect(page.locator("#count-sent")).to_have_text("2")
    await expect(page.locator("#count-failed")).to_have_text("1")
    await expect(page.locator("#count-queued")).to_have_text("2")
    await expect(page.get_by_text("provider refused the number")).to_be_visible()
    await expect(page.get_by_label("2 of 5 sent, 1 failed")).to_have_attribute("value", "3")
    await expect(page.locator("#batch-finish")).to_contain_text("(Europe/London)")
    await screenshot(page, "outbox")
    control_before = await control_count(stack, site)
    await page.get_by_role("button", name="Reset failed SMS").click()
    await expect(
        page.get_by_text("Asked the SMS gateway to retry the failed messages")
    ).to_be_visible()
    assert await control_count(stack, site) == control_before + 1
    last = await EventStore(stack.nc, CONTROL).last(
        subjects.gateway_control("sms", "reset_failed", site)
    )
    # The staff member who pressed the button, not the session's token, is the actor.
    admin = group["admin_user"].user_id
    assert last is not None and last.actor == f"user:{admin}" and last.data.site_id == site  # type: ignore[attr-defined]

    await page.get_by_role("link", name=f"{ids[0][:12]}…").first.click()
    await expect(page.locator("#message-state")).to_have_text("sent")
    await expect(page.get_by_text("released by tick")).to_be_visible()

    await page.goto(f"{stack.url}/console/credits")
    low = page.get_by_role("alert").filter(has_text="Low credit")
    await expect(low).to_be_visible()
    await expect(page.locator(".balance-value")).to_have_text("60 credits")
    points = await page.locator("polyline.balance-line").get_attribute("points")
    assert points is not None and len(points.split()) == 3
    await screenshot(page, "credits")

    await page.goto(f"{stack.url}/console/sites/{site}/replies")
    await expect(page.get_by_role("heading", name="To handle (1)")).to_be_visible()
    await expect(page.get_by_text("Running 10 minutes late, sorry")).to_be_visible()
    await page.get_by_role("button", name="Opt +447700900003 out of SMS").click()
    # The notice comes through the address bar, which gets the masked form only.
    await expect(page.get_by_text("+44•••••••003 is opted out of SMS")).to_be_visible()
    await page.goto(f"{stack.url}/console/optouts")
    await expect(page.get_by_role("table").first).to_contain_text("+447700900003")

    await page.goto(f"{stack.url}/console/audit?site_id={site}&type=stagger.dispatch.failed")
    await expect(page.locator("table.audit")).to_contain_text("provider refused the number")
    await expect(page.locator("table.audit tbody tr")).to_have_count(1)
    await screenshot(page, "audit-log")


async def audit_has(stack: ConsoleStack, token: str, site: str, count: int) -> None:
    base = f"http://127.0.0.1:{stack.env['STAGGER_AUDIT_HTTP_PORT']}/api/v1/audit"

    async def enough() -> bool:
        async with httpx.AsyncClient(timeout=5) as client:
            answer = await client.get(
                f"{base}/events",
                params={"site_id": site, "limit": 1000},
                headers={"Authorization": f"Bearer {token}"},
            )
        return answer.status_code == 200 and len(answer.json()["events"]) >= count

    await wait_until(enough, timeout=30, message=f"{count} audit records for {site}")


async def control_count(stack: ConsoleStack, site: str) -> int:
    info = await stack.nc.jetstream().stream_info(
        CONTROL, subjects_filter=subjects.gateway_control("sms", "reset_failed", site)
    )
    return sum((info.state.subjects or {}).values())


async def test_audit_service_down_shows_a_clear_panel(stack: ConsoleStack, page: Page) -> None:
    group = await stack.group()
    await login(page, stack.url, group["admin_user"])
    stack.audit.stop()
    try:
        await page.goto(f"{stack.url}/console/sites/{group['site']}/outbox")
        panel = page.get_by_role("alert").filter(has_text="Audit service unavailable")
        await expect(panel).to_be_visible()
        await page.goto(f"{stack.url}/console/audit")
        await expect(panel).to_be_visible()
        # The settings pages do not depend on it.
        await page.goto(f"{stack.url}/console/sites/{group['site']}")
        await expect(page.get_by_role("heading", level=1)).to_contain_text("High Street")
    finally:
        stack.audit = start_service("audit", stack.env)


# --- accessibility --------------------------------------------------------------------------


async def test_phone_width_and_keyboard_only(stack: ConsoleStack, browser: Any) -> None:
    group = await stack.group()
    context = await browser.new_context(viewport={"width": 375, "height": 740})
    context.set_default_timeout(15_000)
    page = await context.new_page()
    try:
        await login(page, stack.url, group["admin_user"])
        await page.goto(f"{stack.url}/console/sites/{group['site']}/wizard/sms")
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 375, f"the page scrolls sideways at phone width ({width}px)"
        await screenshot(page, "phone-width-sms-sending")

        # Skip link first, then straight to the content.
        await page.keyboard.press("Tab")
        await expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.locator("main")).to_be_focused()

        # Add a session with the keyboard only.
        sessions = page.get_by_role("group", name="Delivery times")
        await sessions.get_by_label("Sun").focus()
        await page.keyboard.press("Space")
        await page.keyboard.press("Tab")
        await expect(sessions.get_by_label("From")).to_be_focused()
        await page.keyboard.type("10:00")
        await page.keyboard.press("Tab")
        await page.keyboard.type("11:00")
        await page.keyboard.press("Tab")
        add = sessions.get_by_role("button", name="+1: add this session")
        await expect(add).to_be_focused()
        await page.keyboard.press("Enter")
        await expect(page.get_by_role("list", name="Delivery times")).to_contain_text(
            "Sun 10:00–11:00"
        )
        # Every form control on the screen has a label.
        unlabelled = await page.evaluate(
            """() => [...document.querySelectorAll('input, select, textarea')]
                .filter(e => e.type !== 'hidden' && !e.classList.contains('default-action'))
                .filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))
                .map(e => e.name)"""
        )
        assert unlabelled == []
    finally:
        await context.close()
