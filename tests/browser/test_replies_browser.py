"""Replies and inbound email against real processes (config, audit, SMS gateway, the SMS
provider simulator; an email gateway and dovecot for inbound email):

- a patient's SMS, injected at the simulator and delivered to the gateway's signed webhook,
  is unread in the API; answering it sends one SMS through the normal pipeline, which reaches
  the simulator once however often the answer is posted;
- in Chromium, signed in as staff: a reply marked handled (and answered) on the Replies page;
  a quarantined attachment released from the Inbound email page.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from playwright.async_api import Page, expect

from shared.bus import subjects
from shared.bus.topology import DISPATCH, INBOUND, OPTOUTS
from shared.events.envelope import make_event
from shared.events.schemas.optouts import RecipientOptedOut, SoftBounceCounted
from shared.eventstore import EventStore
from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.browser.test_console_http import signed_in
from tests.integration.email_gateway.conftest import EmailHarness, email_settings, imap_settings
from tests.integration.email_gateway.test_receiving import PDF, with_attachment
from tests.integration.sms_gateway.harness import (
    INTAKE_TIMEOUT,
    account_of,
    events,
    one_tick,
    publish_tick,
    terminal,
)
from tests.support.imap import Dovecot
from tests.support.imap import dovecot as dovecot  # the session's IMAP server (a fixture)
from tests.support.processes import ServiceProcess, start_service
from tests.support.waiting import wait_until

SENDER = "+447700900999"
WEBHOOK_SECRET = "replies-test-webhook-secret"


async def sim_account(stack: ConsoleStack) -> dict[str, str]:
    """A simulator account of its own whose replies go to the stack's SMS gateway."""
    port = stack.env["STAGGER_SMS_GATEWAY_HTTP_PORT"]
    name, key = f"acct-{secrets.token_hex(4)}", f"key-{secrets.token_hex(8)}"
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False) as http:
        made = await http.put(
            f"/v1/admin/accounts/{name}",
            json={
                "api_key": key,
                "credits": 1000,
                "rate_per_second": 100,
                "webhook_url": f"http://127.0.0.1:{port}/webhooks/sms/simulator",
                "webhook_secret": WEBHOOK_SECRET,
            },
        )
    assert made.status_code == 201, made.text
    return {"name": name, "key": key}


async def sms_site(
    stack: ConsoleStack,
    group: dict[str, Any],
    account: dict[str, str],
    *,
    region: str = "UK",
    sender: str = SENDER,
    more: dict[str, Any] | None = None,
) -> str:
    settings = {
        "sms": {
            "provider": {
                "kind": "simulator",
                "account_id": account["name"],
                "secret": account["key"],
                "base_url": stack.sim.url,
                "rate_per_second": 100,
                "webhook_secret": WEBHOOK_SECRET,
            },
            "sender_id": sender,
            "mode": "immediate",
            **(more or {}),
        }
    }
    zone = "America/New_York" if region == "US" else "Europe/London"
    settings["sms"].setdefault("quiet_hours", open_hours_now(zone))
    made = await stack.config.create_site(
        group["admin"],
        group["group_id"],
        name="Harbour",
        settings=settings,
        region=region,
        timezone=zone,
    )
    await stack.listed(group["admin"], group["group_id"], made["site_id"])
    return str(made["site_id"])


def open_hours_now(zone: str) -> dict[str, str]:
    """Quiet hours that let an SMS go now at a recipient in `zone` (the number's zone, which
    the site cannot change): the default 08:00-21:00 would hold a test run in the evening."""
    if datetime.now(ZoneInfo(zone)).hour < 12:
        return {"start": "00:00", "end": "23:00"}
    return {"start": "01:00", "end": "23:59"}


async def patient_writes(
    stack: ConsoleStack, account: dict[str, str], sender: str, body: str, to: str = SENDER
) -> None:
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False) as http:
        sent = await http.post(
            "/v1/admin/inbound",
            json={"account": account["name"], "from": sender, "to": to, "body": body},
        )
    assert sent.status_code == 202, sent.text


async def api_replies(stack: ConsoleStack, token: str, **params: Any) -> list[dict[str, Any]]:
    async with stack.config.client(token) as api:
        found = await api.get("/api/v1/replies", params=params)
    assert found.status_code == 200, found.text
    return list(found.json())


async def unread(stack: ConsoleStack, token: str) -> dict[str, Any]:
    async with stack.config.client(token) as api:
        found = await api.get("/api/v1/replies/unread")
    assert found.status_code == 200, found.text
    return dict(found.json())


async def sim_messages(stack: ConsoleStack, account: dict[str, str]) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False) as http:
        found = await http.get("/v1/admin/messages", params={"account": account["name"]})
    return list(found.json())


async def test_answering_a_reply_sends_one_sms_through_the_pipeline(stack: ConsoleStack) -> None:
    group = await stack.group()
    account = await sim_account(stack)
    site = await sms_site(stack, group, account)
    admin, patient = group["admin"], "+447700900123"
    await patient_writes(stack, account, patient, "Can I come on Friday instead?")
    await patient_writes(stack, account, "+447700900124", "STOP")

    async def arrived() -> bool:
        return len(await api_replies(stack, admin, site=site, status="all")) == 2

    await wait_until(arrived, timeout=30, interval=0.2, message="replies in the read model")
    assert (await unread(stack, admin)) == {"unread": 1, "sites": {site: 1}}
    (question,) = await api_replies(stack, admin, keyword="friday")
    assert question["unread"] is True and question["from_number"] == patient
    assert await api_replies(stack, admin, keyword="tuesday") == []
    (stop,) = await api_replies(stack, admin, status="automatic")
    assert stop["kind"] == "optout" and stop["unread"] is False
    assert await api_replies(stack, admin, site=group["site"], status="all") == []

    other_site_manager = await stack.config.token(
        group["group_id"], "site_manager", [group["site"]]
    )
    handled = f"/api/v1/sites/{site}/replies/{question['reply_id']}/handled"
    async with stack.config.client(other_site_manager) as api:
        unseen = await api.post(handled)
        unseen_list = await api.get("/api/v1/replies", params={"site": site})
    assert unseen.status_code == 404 and unseen_list.status_code == 404
    async with stack.config.client(admin) as api:
        elsewhere = await api.post(
            f"/api/v1/sites/{group['site']}/replies/{question['reply_id']}/handled"
        )
    assert elsewhere.status_code == 404, "a reply belongs to its own site only"
    path = f"/api/v1/sites/{site}/replies/{question['reply_id']}/answer"
    text = "Yes, Friday at 9:30 is yours. Smile Dental"
    async with stack.config.client(group["auditor"]) as api:
        refused = await api.post(path, json={"body": text})
    assert refused.status_code == 403
    async with stack.config.client(admin) as api:
        empty = await api.post(path, json={"body": ""})
        first = await api.post(path, json={"body": text})
        again = await api.post(path, json={"body": text})  # a double click
    assert empty.status_code == 422
    assert [e["field"] for e in empty.json()["errors"]] == ["body"]
    assert first.status_code == 202, first.text
    assert again.status_code == 202, again.text
    message_id = first.json()["message"]["message_id"]
    assert again.json()["message"]["message_id"] == message_id, "the same answer, stored once"
    assert first.json()["reply"]["unread"] is False
    assert (await unread(stack, admin))["unread"] == 0

    # No scheduler in this stack: one tick releases the account's queue, so it must come
    # after the gateway has taken the answer in (its queued event follows the ledger's commit);
    # a tick that finds the queue empty is spent.
    async def queued() -> bool:
        found = await events(stack.nc, DISPATCH)
        return any(
            e.type == "stagger.dispatch.queued" and e.data.message_id == message_id for e in found
        )

    await wait_until(queued, timeout=INTAKE_TIMEOUT, interval=0.2, message="the answer queued")
    await publish_tick(
        stack.nc,
        one_tick(
            account_of("simulator", account["name"], stack.sim.url, group["group_id"]), [site], 10
        ),
    )

    async def sent() -> bool:
        ends = (await terminal(stack.nc)).get(message_id, [])
        return any(e.type == "stagger.dispatch.sent" for e in ends)

    await wait_until(sent, timeout=30, interval=0.2, message="the answer sent")
    to_patient = [m for m in await sim_messages(stack, account) if m.get("to") == patient]
    assert len(to_patient) == 1, to_patient
    assert to_patient[0]["body"] == text
    stopped = [m for m in await sim_messages(stack, account) if m.get("to") == "+447700900124"]
    assert stopped == [], "the UK expects no STOP confirmation and the site set none"
    ends = (await terminal(stack.nc))[message_id]
    assert [e.type for e in ends] == ["stagger.dispatch.sent"], "one terminal event"
    answered = [
        e
        async for e in EventStore(stack.nc, INBOUND).replay(filter_subject=f"replies.{site}")
        if e.type == "stagger.reply.answered"
    ]
    assert [(e.data.message_id, e.actor) for e in answered] == [(message_id, answered[0].actor)], (
        "one answered event however often it was posted"
    )
    assert answered[0].actor.startswith("token:")


async def test_stop_is_confirmed_and_help_answered_where_the_region_expects_it(
    stack: ConsoleStack,
) -> None:
    group = await stack.group()
    account = await sim_account(stack)
    us_sender = "+12025550199"
    help_text = "Harbour Dental: call (202) 555-0100. Reply STOP to opt out."
    site = await sms_site(
        stack, group, account, region="US", sender=us_sender, more={"help_reply": help_text}
    )
    stopper, helper = "+12025550123", "+12025550124"
    await patient_writes(stack, account, stopper, "STOP", to=us_sender)
    await patient_writes(stack, account, helper, "HELP", to=us_sender)

    async def queued_answers() -> list[str]:
        found = await api_replies(stack, group["admin"], site=site, status="automatic")
        return [r["reply_id"] for r in found]

    await wait_until(
        lambda: _two(queued_answers), timeout=30, interval=0.2, message="two keyword replies"
    )
    provider_account = account_of("simulator", account["name"], stack.sim.url, group["group_id"])

    async def both_sent() -> bool:
        await publish_tick(stack.nc, one_tick(provider_account, [site], 10))
        sent = {m["to"] for m in await sim_messages(stack, account)}
        return {stopper, helper} <= sent

    await wait_until(both_sent, timeout=30, interval=0.5, message="both answers sent")
    by_number: dict[str, list[str]] = {}
    for m in await sim_messages(stack, account):
        by_number.setdefault(m["to"], []).append(m["body"])
    assert by_number[stopper] == [
        "Harbour: you are unsubscribed and will receive no more texts. Reply START to resubscribe."
    ], "the region's confirmation, once, although the number is now opted out"
    assert by_number[helper] == [help_text], "the site's own HELP text"
    replies = [
        e
        async for e in EventStore(stack.nc, INBOUND).replay(filter_subject=f"replies.{site}")
        if e.type == "stagger.reply.received"
    ]
    assert sorted(e.data.kind for e in replies) == ["help", "optout"]
    assert all(e.data.auto_reply_message_id for e in replies)

    # A later message to the opted-out number is suppressed as before.
    async with stack.config.client(group["admin"]) as api:
        later = await api.post(
            f"/api/v1/sites/{site}/messages",
            json={"channel": "sms", "messages": [{"to": stopper, "body": "Recall"}]},
        )
        forged = await api.post(
            f"/api/v1/sites/{site}/messages",
            json={
                "channel": "sms",
                "messages": [{"to": stopper, "body": "x", "category": "auto_reply"}],
            },
        )
    assert forged.status_code == 422, "only the gateway queues auto replies"
    later_id = later.json()["messages"][0]["message_id"]

    async def suppressed() -> bool:
        await publish_tick(stack.nc, one_tick(provider_account, [site], 10))
        ends = (await terminal(stack.nc)).get(later_id, [])
        return any(e.type == "stagger.dispatch.suppressed" for e in ends)

    await wait_until(suppressed, timeout=30, interval=0.5, message="later message suppressed")
    assert len([m for m in await sim_messages(stack, account) if m["to"] == stopper]) == 1


NAV_UNREAD = re.compile(r'id="nav-unread">(\d+)<')


async def nav_unread(console: httpx.AsyncClient) -> int:
    """The unread count in the main nav of a signed-in client's dashboard (0: none shown)."""
    shown = await console.get("/console/dashboard")
    assert shown.status_code == 200, shown.text
    assert 'href="/console/replies"' in shown.text
    found = NAV_UNREAD.search(shown.text)
    return int(found.group(1)) if found else 0


async def test_the_main_nav_counts_the_unread_replies_of_the_sites_one_may_see(
    stack: ConsoleStack,
) -> None:
    group = await stack.group()
    account = await sim_account(stack)
    site = await sms_site(stack, group, account)
    users = {
        "admin": group["admin_user"],
        "auditor": group["auditor_user"],
        "own manager": await stack.staff(group["group_id"], "site_manager", [site]),
        "other manager": await stack.staff(group["group_id"], "site_manager", [group["site"]]),
    }
    async with contextlib.AsyncExitStack() as signed:
        pages = {
            name: (await signed.enter_async_context(signed_in(stack, user)))[0]
            for name, user in users.items()
        }
        assert await nav_unread(pages["admin"]) == 0
        await patient_writes(stack, account, "+447700900141", "Can I bring my son too?")
        await patient_writes(stack, account, "+447700900142", "What time do you open?")

        async def arrived() -> bool:
            return (await unread(stack, group["admin"]))["unread"] == 2

        await wait_until(arrived, timeout=30, interval=0.2, message="two unread replies")
        counts = {name: await nav_unread(page) for name, page in pages.items()}
        # The other site's manager sees none of this site's replies, so counts none.
        assert counts == {"admin": 2, "auditor": 2, "own manager": 2, "other manager": 0}
        first, _ = await api_replies(stack, group["admin"], status="unread")
        async with stack.config.client(group["admin"]) as api:
            handled = await api.post(f"/api/v1/sites/{site}/replies/{first['reply_id']}/handled")
        assert handled.status_code == 200, handled.text

        async def one_left() -> bool:
            return (await unread(stack, group["admin"]))["unread"] == 1

        await wait_until(one_left, timeout=30, interval=0.2, message="one unread reply left")
        assert await nav_unread(pages["admin"]) == 1


async def _two(found: Any) -> bool:
    return len(await found()) == 2


@pytest.mark.browser
async def test_a_reply_marked_handled_and_answered_in_the_console(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    account = await sim_account(stack)
    site = await sms_site(stack, group, account)
    await patient_writes(stack, account, "+447700900133", "Is parking free at the practice?")

    async def arrived() -> bool:
        return (await unread(stack, group["admin"]))["unread"] == 1

    await wait_until(arrived, timeout=30, interval=0.2, message="the reply unread")
    await login(page, stack.url, group["admin_user"])
    await page.get_by_role("link", name="Replies").first.click()
    await expect(page.locator("#unread-total")).to_contain_text("Unread: 1")
    await expect(page.get_by_text("Is parking free at the practice?")).to_be_visible()
    await page.get_by_label("Keyword").fill("parking")
    await page.get_by_role("button", name="Filter").click()
    await expect(page.get_by_text("Is parking free at the practice?")).to_be_visible()
    await screenshot(page, "replies-unread")
    await page.get_by_role("button", name="Mark handled").click()
    await expect(page.get_by_text("Marked handled.")).to_be_visible()
    await expect(page.locator("#unread-total")).to_contain_text("Unread: 0")
    assert (await unread(stack, group["admin"]))["unread"] == 0

    await page.goto(f"{stack.url}/console/sites/{site}/replies?status=handled")
    reply = page.locator("li.reply")
    await expect(reply).to_have_count(1)
    await expect(reply.locator(".reply-state")).to_contain_text("handled by")
    await reply.get_by_label("Answer +447700900133 by SMS").fill("Yes, behind the building.")
    await reply.get_by_role("button", name="Send answer").click()
    await expect(page.get_by_text("Your answer is queued")).to_be_visible()
    await expect(page.get_by_text("Answered 1×")).to_be_visible()
    await screenshot(page, "replies-handled")

    await page.context.clear_cookies()
    await login(page, stack.url, group["auditor_user"])
    await page.goto(f"{stack.url}/console/sites/{site}/replies?status=")
    await expect(page.get_by_text("Is parking free at the practice?")).to_be_visible()
    await expect(page.get_by_role("button", name="Mark handled")).to_have_count(0)
    await expect(page.get_by_role("button", name="Send answer")).to_have_count(0)


@pytest.fixture(scope="module")
def email_gateway(stack: ConsoleStack) -> Any:
    """An email gateway process beside the stack (reads the sites' mailboxes)."""
    process: ServiceProcess = start_service("email_gateway", stack.env)
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.browser
async def test_a_quarantined_attachment_released_in_the_console(
    stack: ConsoleStack,
    page: Page,
    dovecot: Dovecot,
    email_gateway: Any,
) -> None:
    group = await stack.group()
    user, _ = dovecot.add_user()
    made = await stack.config.create_site(
        group["admin"],
        group["group_id"],
        name="Quayside",
        settings={"email": email_settings(9, imap=imap_settings(dovecot, user, sent_folder=None))},
    )
    site = made["site_id"]
    await stack.listed(group["admin"], group["group_id"], site)
    filename = f"referral-{uuid.uuid4().hex[:6]}.pdf"
    dovecot.append(user, "INBOX", with_attachment(PDF, filename))
    harness = EmailHarness(stack.nc, "", Path("."))

    async def received() -> bool:
        async for e in EventStore(stack.nc, INBOUND).replay(filter_subject=f"inbound.email.{site}"):
            if e.type == "stagger.inbound.email_received":
                return True
        await harness.tick(site, 10, receive=True)  # the scheduler's receive cycle
        return False

    await wait_until(received, timeout=60, interval=1.0, message="the email received")

    manager = await stack.staff(group["group_id"], "site_manager", [site])
    await login(page, stack.url, manager)
    await page.goto(f"{stack.url}/console/sites/{site}/inbox")
    await expect(page.get_by_text("My referral letter")).to_be_visible()
    await expect(page.locator(".quarantined")).to_have_text("In quarantine")
    await expect(page.get_by_role("button", name=f"Release {filename}")).to_have_count(0)

    await page.context.clear_cookies()
    await login(page, stack.url, group["admin_user"])
    await page.goto(f"{stack.url}/console/sites/{site}")
    await page.get_by_role("link", name="Inbound email").click()
    await expect(page.get_by_text("sam@example.net")).to_be_visible()
    await screenshot(page, "inbox-quarantined")
    await page.get_by_role("button", name=f"Release {filename}").click()
    await expect(page.get_by_text("Release requested")).to_be_visible()
    await expect(page.locator(".released")).to_contain_text("Released by")
    await screenshot(page, "inbox-released")

    released = [
        e
        async for e in EventStore(stack.nc, INBOUND).replay(filter_subject=f"inbound.email.{site}")
        if e.type == "stagger.inbound.attachment_released"
    ]
    assert len(released) == 1 and released[0].data.automatic is False
    assert released[0].actor == f"user:{group['admin_user'].user_id}"
    # Sealed on arrival, opened on the page; erasing the sender leaves "erased" there.
    assert released[0].data.filename.startswith("pd1:")
    async with stack.config.client(group["admin"]) as api:
        erased = await api.post(
            f"/api/v1/groups/{group['group_id']}/erasures", json={"recipient": "sam@example.net"}
        )
    assert erased.status_code == 200, erased.text

    async def shows_erased() -> bool:
        await page.goto(f"{stack.url}/console/sites/{site}/inbox")
        text = await page.locator("main").inner_text()
        return "sam@example.net" not in text and filename not in text and "erased" in text

    await wait_until(shows_erased, timeout=30, interval=1.0, message="the inbox reads erased")


@pytest.mark.browser
async def test_bounces_on_the_opt_outs_page(stack: ConsoleStack, page: Page) -> None:
    group = await stack.group()
    group_id, site = group["group_id"], group["site"]
    store = EventStore(stack.nc, OPTOUTS)
    subject = subjects.optouts(group_id, "email")
    soft = SoftBounceCounted(
        group_id=group_id,
        recipient="full-box@example.org",
        count=2,
        threshold=3,
        status="4.2.2",
        diagnostic="mailbox full",
        site_id=site,
    )
    hard = RecipientOptedOut(
        group_id=group_id,
        channel="email",
        recipient="gone@example.org",
        how="bounce",
        keyword="hard bounce 5.1.1",
        site_id=site,
    )
    for data in (soft, hard):
        await store.append(
            subject,
            make_event(
                data,
                source="email_gateway",
                actor="service:email_gateway",
                group_id=group_id,
                site_id=site,
            ),
        )

    async def audited() -> bool:
        base = f"http://127.0.0.1:{stack.env['STAGGER_AUDIT_HTTP_PORT']}/api/v1/audit"
        async with httpx.AsyncClient(
            headers={"Authorization": f"Bearer {group['admin']}"}, trust_env=False
        ) as http:
            found = await http.get(f"{base}/events", params={"type": "stagger.optout."})
        return found.status_code == 200 and len(found.json().get("events", [])) >= 2

    await wait_until(audited, timeout=30, interval=0.2, message="the audit trail has both")
    await login(page, stack.url, group["admin_user"])
    await page.get_by_role("link", name="Opt-outs").click()
    email_list = page.locator("section").filter(has=page.locator("#list-email"))
    await expect(email_list).to_contain_text("gone@example.org")
    await expect(email_list).to_contain_text("bounce (hard bounce 5.1.1)")
    soft_table = page.locator("section").filter(has=page.locator("#soft-h"))
    await expect(soft_table).to_contain_text("full-box@example.org")
    await expect(soft_table).to_contain_text("2 of 3")
    await expect(soft_table).to_contain_text("4.2.2 (mailbox full)")
    await screenshot(page, "optouts-bounces")
