"""End to end through the real scheduler, SMS gateway and provider simulator (issue 22), one
stack for the module (each stack costs half a minute to start):

- **Cancel midway**: a 1,000-message batch staggered one a second is cancelled from the batch
  page with its confirmation; nothing more reaches the simulator, and the page shows N sent and
  1,000 - N cancelled, each message with exactly one terminal event.

- **Reset failed** from the console's outbox: a message the provider refused ends `failed`;
  the button makes the gateway send it again as a new message (`retry_of`), which reaches the
  simulator; each message has exactly one terminal event.
- A future **`not_before`**: the message waits in the gateway and goes no earlier.
- An **`expires_at`**: a message still waiting (outside its sessions) when it passes ends
  `expired` and never reaches the simulator.
- **Credits that are true**: a batch runs the account out of credits part-way (held), it is
  topped up, sending resumes by itself, and the credits page shows the provider's actual
  balance (asked of the simulator) and a chart of the reports. Last: it spends the credits.

This module's SMS gateway gives up after one attempt (`STACK_ENV`), so a provider error is a
failure at once instead of after minutes of back-off.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from playwright.async_api import Page, expect

from services.config.adapters.settings_store import SettingsStore
from shared.bus.topology import DISPATCH, PROVIDERS, SETTINGS
from shared.domain.accounts import sms_account_id
from shared.domain.numbers import for_people
from shared.eventstore import EventStore
from tests.browser.conftest import SIM_ACCOUNT, SIM_KEY, ConsoleStack, login, screenshot
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
    # One message a second: the fastest staggered spacing.
    settings["sms"].update(mode="staggered", every_minutes=1 / 60, sessions=sessions)
    settings["sms"]["provider"]["rate_per_second"] = 5
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


# --- cancel midway ---

CANCEL_TOTAL = 1000
SENT_BEFORE_CANCEL = 3


async def _batch(stack: ConsoleStack, token: str, site: str, batch_id: str) -> dict[str, Any]:
    async with stack.config.client(token) as api:
        shown = await api.get(f"/api/v1/sites/{site}/batches/{batch_id}")
    assert shown.status_code == 200, shown.text
    return shown.json()  # type: ignore[no-any-return]


async def _sent_to_simulator(stack: ConsoleStack, ids: set[str]) -> set[str]:
    """Which of `ids` the simulator has received (its own record of submissions)."""
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False, timeout=10) as sim:
        answer = await sim.get("/v1/admin/submissions")
    assert answer.status_code == 200, answer.text
    return {s["reference"] for s in answer.json()} & ids


async def test_cancel_a_staggered_batch_of_1000_midway(
    stack: ConsoleStack, scheduler: ServiceProcess, page: Page
) -> None:
    gid, admin, site = await _site(stack, OPEN_NOW)
    user = await stack.staff(gid, "group_admin")
    async with stack.config.client(admin) as api:
        submitted = await api.post(
            f"/api/v1/sites/{site}/messages",
            json={
                "channel": "sms",
                "messages": [
                    {"to": f"+614{i:08d}", "body": f"Recall {i}: time for a check-up."}
                    for i in range(CANCEL_TOTAL)
                ],
            },
        )
    assert submitted.status_code == 202, submitted.text
    batch_id = submitted.json()["batch_id"]
    ids = {m["message_id"] for m in submitted.json()["messages"]}
    assert len(ids) == CANCEL_TOTAL

    await login(page, stack.url, user)
    await page.goto(f"{stack.url}/console/sites/{site}/batches/{batch_id}")
    await expect(page.locator("#batch-h")).to_contain_text("1,000 SMS messages")

    async def some_sent() -> bool:
        return len(await _sent_to_simulator(stack, ids)) >= SENT_BEFORE_CANCEL

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
    assert sent >= SENT_BEFORE_CANCEL and sent + cancelled == CANCEL_TOTAL, shown["counts"]
    assert cancelled > CANCEL_TOTAL // 2, "cancelled midway, not at the end"

    # Every message has ended, so the gateway holds nothing it could still send: what the
    # simulator has now is all it will ever get, and it is exactly the sent ones.
    ends = await terminal(stack.nc)
    assert all(len(ends.get(i, [])) == 1 for i in ids), "each message ends exactly once"
    sent_ids = {i for i in ids if ends[i][0].type == "stagger.dispatch.sent"}
    assert len(sent_ids) == sent
    assert await _sent_to_simulator(stack, ids) == sent_ids

    await page.reload()
    await expect(page.locator("#batch-count-sent")).to_have_text(for_people(sent))
    await expect(page.locator("#batch-count-cancelled")).to_have_text(for_people(cancelled))
    await expect(page.get_by_text("Every message of this batch has an outcome.")).to_be_visible()
    await expect(page.locator("#cancel-batch")).to_have_count(0)
    await screenshot(page, "batch-1000-cancelled-midway")


# --- credits run out, topped up (last: it leaves the account nearly empty) ---

RUN_TOTAL = 10
CREDITS_AT_START = 4
TOP_UP_TO = 50


async def _sim(stack: ConsoleStack, method: str, path: str, **kw: Any) -> Any:
    async with httpx.AsyncClient(base_url=stack.sim.url, trust_env=False, timeout=10) as sim:
        answer = await sim.request(method, path, **kw)
    assert answer.status_code == 200, answer.text
    return answer.json()


async def _provider_balance(stack: ConsoleStack) -> float:
    """What the provider itself says the account holds."""
    body = await _sim(stack, "GET", "/v1/balance", headers={"Authorization": f"Bearer {SIM_KEY}"})
    return float(body["balance"])


async def test_after_running_out_and_a_top_up_the_credits_page_shows_the_real_balance(
    stack: ConsoleStack, scheduler: ServiceProcess, page: Page
) -> None:
    account = f"/v1/admin/accounts/{SIM_ACCOUNT}"
    await _sim(stack, "PUT", account, json={"credits": CREDITS_AT_START})
    gid, admin, site = await _site(stack, OPEN_NOW)
    stored = await SettingsStore(EventStore(stack.nc, SETTINGS)).site(site)
    assert stored is not None
    account_id = sms_account_id(stored.settings.sms.provider, gid)
    async with stack.config.client(admin) as api:
        submitted = await api.post(
            f"/api/v1/sites/{site}/messages",
            json={
                "channel": "sms",
                "messages": [
                    {"to": f"+614{i:08d}", "body": f"Recall {i}"} for i in range(RUN_TOTAL)
                ],
            },
        )
    assert submitted.status_code == 202, submitted.text
    ids = {m["message_id"] for m in submitted.json()["messages"]}

    async def held() -> bool:
        found = await events(stack.nc, PROVIDERS)
        return any(
            e.type == "stagger.credits.sending_held" and e.data.account == account_id  # type: ignore[attr-defined]
            for e in found
        )

    await wait_until(held, timeout=60, interval=0.3, message="the account held: no credits")

    async def sent_what_was_paid_for() -> bool:
        # The hold and the last send's event leave the gateway's outbox in either order.
        ends = await terminal(stack.nc)
        return sum(1 for i in ids if i in ends) == CREDITS_AT_START

    await wait_until(sent_what_was_paid_for, timeout=30, message="four sent, then none")
    at_provider = {m["reference"] for m in await _sim(stack, "GET", "/v1/admin/messages")}
    assert len(at_provider & ids) == CREDITS_AT_START
    assert await _provider_balance(stack) == 0

    await _sim(stack, "PUT", account, json={"credits": TOP_UP_TO})

    async def all_sent() -> bool:
        ends = await terminal(stack.nc)
        return all(i in ends for i in ids)

    await wait_until(all_sent, timeout=90, interval=0.3, message="sending resumed after top-up")
    ends = await terminal(stack.nc)
    assert {e.type for i in ids for e in ends[i]} == {"stagger.dispatch.sent"}
    assert all(len(ends[i]) == 1 for i in ids)
    actual = await _provider_balance(stack)
    assert actual == TOP_UP_TO - (RUN_TOTAL - CREDITS_AT_START)

    async def reported() -> bool:
        reports = [
            e
            for e in await events(stack.nc, PROVIDERS)
            if e.type == "stagger.credits.balance_reported" and e.data.account == account_id  # type: ignore[attr-defined]
        ]
        return bool(reports) and reports[-1].data.balance == actual  # type: ignore[attr-defined]

    await wait_until(reported, timeout=30, interval=0.3, message="the latest report is the balance")

    await login(page, stack.url, await stack.staff(gid, "group_admin"))
    await page.goto(f"{stack.url}/console/credits")
    await expect(page.locator(".balance-value")).to_have_text(f"{for_people(actual)} credits")
    points = await page.locator("polyline.balance-line").get_attribute("points")
    assert points is not None and len(points.split()) >= 3, points
    await expect(page.get_by_text("No credit events yet")).to_have_count(0)
    await screenshot(page, "credits-after-top-up")
