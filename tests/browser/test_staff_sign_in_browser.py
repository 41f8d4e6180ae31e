"""Staff sign-in in headless Chromium against the real console: email, password and an
authenticator code; a wrong code refused; sign-ins throttled after repeated failures."""

from __future__ import annotations

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import ConsoleStack, fill_sign_in, login, screenshot

pytestmark = pytest.mark.browser


async def test_password_and_authenticator_code_sign_in(stack: ConsoleStack, page: Page) -> None:
    group = await stack.group()
    admin = group["admin_user"]
    await page.goto(f"{stack.url}/console/")
    await expect(page.get_by_role("heading", level=1, name="Sign in to Stagger")).to_be_visible()
    await login(page, stack.url, admin)
    await expect(page.locator(".role")).to_contain_text("group admin")
    await expect(page.get_by_role("link", name="Staff")).to_be_visible()
    await screenshot(page, "staff-signed-in")
    await page.get_by_role("link", name="Account").click()
    await expect(page.get_by_text(admin.email)).to_be_visible()
    await page.get_by_role("button", name="Sign out", exact=True).click()
    await expect(page.get_by_role("heading", level=1, name="Sign in to Stagger")).to_be_visible()
    await page.goto(f"{stack.url}/console/")
    await expect(page.get_by_role("heading", level=1, name="Sign in to Stagger")).to_be_visible()


async def test_a_wrong_code_is_refused(stack: ConsoleStack, page: Page) -> None:
    group = await stack.group()
    admin = group["admin_user"]
    right = admin.code()
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"
    await fill_sign_in(page, stack.url, admin, code=wrong)
    alert = page.get_by_role("alert")
    await expect(alert).to_contain_text("That email, password or code is not right.")
    await expect(page.get_by_label("Email")).to_have_value(admin.email)
    await screenshot(page, "staff-wrong-code")
    # No code at all is refused too (group admins always need one).
    await fill_sign_in(page, stack.url, admin, code="")
    await expect(page.get_by_role("alert")).to_contain_text("not right")
    await page.goto(f"{stack.url}/console/")
    await expect(page.get_by_role("heading", level=1, name="Sign in to Stagger")).to_be_visible()
    # The right code still works afterwards.
    await login(page, stack.url, admin)


async def test_sign_in_is_throttled_after_repeated_failures(
    stack: ConsoleStack, page: Page
) -> None:
    group = await stack.group()
    auditor = group["auditor_user"]
    for _ in range(5):  # STAGGER_SIGNIN_ACCOUNT_FAILURES defaults to 5 per 15 minutes
        await page.goto(f"{stack.url}/console/login")
        await page.get_by_label("Email").fill(auditor.email)
        await page.get_by_label("Password").fill("not the password at all")
        await page.get_by_role("button", name="Sign in").click()
        await expect(page.get_by_role("alert")).to_contain_text("not right")
    # Now even the right password waits: the account is throttled.
    await page.goto(f"{stack.url}/console/login")
    answer_status: list[int] = []
    page.on(
        "response",
        lambda r: answer_status.append(r.status) if r.url.endswith("/console/login") else None,
    )
    await fill_sign_in(page, stack.url, auditor)
    await expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")
    assert 429 in answer_status
    await screenshot(page, "staff-throttled")
    # Another account from the same address is not held back by this one's failures.
    await login(page, stack.url, group["admin_user"])
