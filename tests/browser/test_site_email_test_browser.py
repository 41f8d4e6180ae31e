"""The email Test on a site's page (issue 22), in headless Chromium, with password sign-in: a real
email gateway process signs in to the project's aiosmtpd sink (AUTH required); the right
password shows "Test succeeded", a wrong one the server's refusal. Nothing is sent; an auditor
sees no Test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from services.config.email_test import request_email_test
from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.support.processes import ServiceProcess, start_service
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser

USER = "frontdesk@smiledent.example"
PASSWORD = "correct horse battery staple"


@pytest.fixture
def email_gateway(stack: ConsoleStack, tmp_path: Path) -> Iterator[ServiceProcess]:
    """An email gateway process beside the console stack (its own database)."""
    env = {
        **stack.env,
        "STAGGER_VAR_DIR": str(tmp_path / "email-var"),
        "STAGGER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'email.db'}",
        "STAGGER_INSTANCE_ID": "email-site-test",
    }
    process = start_service("email_gateway", env)
    try:
        yield process
    finally:
        process.stop()


def _email(port: int, password: str) -> dict[str, Any]:
    return {
        "email": {
            "address": USER,
            "smtp": {
                "host": "127.0.0.1",
                "port": port,
                "security": "none",
                "username": USER,
                "password": password,
            },
            "imap": {"enabled": False},
        }
    }


async def test_email_test_on_the_site_page_with_a_password(
    stack: ConsoleStack,
    page: Page,
    email_gateway: ServiceProcess,
    smtp_servers: Any,  # noqa: F811
) -> None:
    server = smtp_servers(username=USER, password=PASSWORD)
    gid = await stack.config.create_group()
    admin = await stack.config.token(gid, "group_admin")
    good = await stack.config.create_site(
        admin, gid, name="Good", settings=_email(server.port, PASSWORD)
    )
    bad = await stack.config.create_site(
        admin, gid, name="Bad", settings=_email(server.port, "not the password")
    )
    for site in (good["site_id"], bad["site_id"]):

        async def loaded(site: str = site) -> bool:
            answer = await request_email_test(stack.nc, site)
            return answer.get("last_error") != "unknown site"

        await wait_until(loaded, timeout=30, message="the gateway knows the site")

    await login(page, stack.url, await stack.staff(gid, "group_admin"))
    await page.goto(f"{stack.url}/console/sites/{good['site_id']}")
    await page.get_by_role("button", name="Test the email account").click()
    result = page.locator("#site-email-test-result")
    await expect(result).to_contain_text("Test succeeded", timeout=30_000)
    await expect(result).to_contain_text("Signed in to the SMTP server")
    await screenshot(page, "site-email-test-succeeded")

    await page.goto(f"{stack.url}/console/sites/{bad['site_id']}")
    await page.get_by_role("button", name="Test the email account").click()
    await expect(result).to_contain_text("Test failed", timeout=30_000)
    reason = (await page.locator("#site-email-test-reason").text_content()) or ""
    assert "535" in reason or "authentication" in reason.lower(), reason
    assert "not the password" not in (await page.content())
    await screenshot(page, "site-email-test-failed")
    assert server.received == [], "the Test sends nothing"

    auditor = await stack.staff(gid, "auditor")
    await page.context.clear_cookies()
    await login(page, stack.url, auditor)
    await page.goto(f"{stack.url}/console/sites/{good['site_id']}")
    await expect(page.get_by_role("heading", level=1)).to_contain_text("Good")
    await expect(page.locator("#site-email-test-button")).to_have_count(0)
