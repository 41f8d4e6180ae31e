"""The wizard's email Test button in Chromium (issue 19), for each sign-in method: a real email
gateway process signs in to an OAuth-only SMTP server and to dovecot (oauth2 passdb) with
tokens from the local authorization server; success names the folders opened, a wrong secret
shows the authorization server's reason.

The site page's email Test (issue 22), with password sign-in: the same gateway signs in to the
project's aiosmtpd sink (AUTH required); the right password shows "Test succeeded", a wrong one
the server's refusal; nothing is sent; an auditor sees no Test."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, expect

from services.config.email_test import request_email_test
from tests.browser.conftest import ConsoleStack, login, screenshot
from tests.integration.email_gateway.test_oauth_smtp import MAILBOX, sign_in_for
from tests.support.imap import dovecot_binary
from tests.support.oauth_imap import OAuthDovecot, oauth_dovecot  # noqa: F401  (fixture)
from tests.support.oauth_server import AuthServer, auth_server  # noqa: F401  (fixture)
from tests.support.oauth_smtp import oauth_smtp  # noqa: F401  (fixture)
from tests.support.processes import ServiceProcess, start_service
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)
from tests.support.waiting import wait_until

pytestmark = pytest.mark.browser


@pytest.fixture
def email_gateway(stack: ConsoleStack, tmp_path: Path) -> Iterator[ServiceProcess]:
    """An email gateway process beside the console stack (its own database)."""
    env = {
        **stack.env,
        "STAGGER_VAR_DIR": str(tmp_path / "email-var"),
        "STAGGER_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'email.db'}",
        "STAGGER_INSTANCE_ID": "email-browser",
    }
    process = start_service("email_gateway", env)
    try:
        yield process
    finally:
        process.stop()


def wrong(server: AuthServer, method: str, sign_in: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The same sign-in with a bad credential, and the reason the server gives for it."""
    if method == "microsoft_secret":
        return {**sign_in, "client_secret": "wrong-secret"}, "AADSTS7000215"
    if method == "microsoft_certificate":
        other, _ = sign_in_for(AuthServer(), "microsoft_certificate")  # never registered here
        return {**sign_in, "certificate": other["certificate"]}, "AADSTS700027"
    if method == "google_workspace":
        key = json.loads(sign_in["service_account_key"])
        _, stranger = AuthServer().add_service_account(MAILBOX)
        key["private_key"] = stranger["private_key"]
        return {**sign_in, "service_account_key": json.dumps(key)}, "Invalid JWT Signature"
    return {**sign_in, "refresh_token": "rt-unknown"}, "Token has been expired or revoked"


@pytest.mark.parametrize(
    "method", ["microsoft_secret", "microsoft_certificate", "google_workspace", "refresh_token"]
)
async def test_email_test_button_for_each_sign_in_method(
    stack: ConsoleStack,
    page: Page,
    email_gateway: ServiceProcess,
    auth_server: AuthServer,  # noqa: F811
    oauth_smtp: Any,  # noqa: F811
    oauth_dovecot: OAuthDovecot,  # noqa: F811
    method: str,
) -> None:
    assert dovecot_binary() is not None
    server, _ = oauth_smtp()
    oauth_dovecot.add_user(MAILBOX)
    oauth_dovecot.create(MAILBOX, "Sent Items")
    sign_in, _ = sign_in_for(auth_server, method)
    bad, reason = wrong(auth_server, method, sign_in)
    group_id = await stack.config.create_group()
    admin = await stack.config.token(group_id, "group_admin")

    def email(sign: dict[str, Any]) -> dict[str, Any]:
        return {
            "email": {
                "address": MAILBOX,
                "smtp": {"host": "127.0.0.1", "port": server.port, "security": "none"},
                "imap": {
                    "enabled": True,
                    "host": oauth_dovecot.host,
                    "port": oauth_dovecot.port,
                    "security": "none",
                    "sent_folder": "Sent Items",
                },
                "sign_in": sign,
            }
        }

    create = stack.config.create_site
    good_site = await create(admin, group_id, name="Good", settings=email(sign_in))
    bad_site = await create(admin, group_id, name="Bad", settings=email(bad))
    for site in (good_site["site_id"], bad_site["site_id"]):

        async def loaded(site: str = site) -> bool:
            answer = await request_email_test(stack.nc, site)
            return answer.get("last_error") != "unknown site"

        await wait_until(loaded, timeout=30, message="the gateway knows the site")

    await login(page, stack.url, await stack.staff(group_id, "group_admin"))
    await page.goto(f"{stack.url}/console/sites/{good_site['site_id']}/wizard/account")
    await expect(page.get_by_label("Sign-in method")).to_be_visible()
    await page.get_by_role("button", name="Test", exact=True).click()
    result = page.locator("#email-test")
    await expect(result).to_contain_text("Test succeeded", timeout=30_000)
    await expect(result).to_contain_text("INBOX, Sent Items")
    await screenshot(page, f"email-test-{method}-succeeded")

    await page.goto(f"{stack.url}/console/sites/{bad_site['site_id']}/wizard/account")
    await page.get_by_role("button", name="Test", exact=True).click()
    await expect(result).to_contain_text("Test failed", timeout=30_000)
    await expect(result).to_contain_text(reason)
    await screenshot(page, f"email-test-{method}-failed")
    assert server.received == [], "the Test sends nothing"


# --- the site page's email Test, password sign-in against the aiosmtpd sink (issue 22) ---

USER = "frontdesk@smiledent.example"
PASSWORD = "correct horse battery staple"


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
