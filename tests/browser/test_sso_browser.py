"""Single sign-on in Chromium against a real OpenID Provider (Node's oidc-provider).

The provider's own development sign-in page accepts any login name as the account's email
(verified, unless it contains "+unverified"), so each test signs in as whoever it needs.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import expect

from services.config.console.sso_pages import REFUSED
from services.config.sso.store import SsoStore
from services.config.staff.store import StaffStore, UserRow
from shared.config import StaggerConfig
from shared.db.engine import create_engine, session_factory
from tests.browser.conftest import ConsoleStack, screenshot
from tests.support.openid_provider import OpenIdProvider, start_provider

pytestmark = [pytest.mark.browser, pytest.mark.slow]

CLIENT_ID = "stagger-console"
CLIENT_SECRET = "test-client-secret-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
async def provider(
    stack: ConsoleStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[OpenIdProvider]:
    running = start_provider(
        [
            {
                "client_id": CLIENT_ID,
                "client_secret": CLIENT_SECRET,
                "redirect_uris": [f"{stack.url}/console/sso/callback"],
            }
        ],
        tmp_path_factory.mktemp("openid-provider"),
    )
    try:
        yield running
    finally:
        running.stop()


async def sso_group(stack: ConsoleStack, provider: OpenIdProvider) -> str:
    """A new group that signs in with the test provider."""
    group_id = await stack.config.create_group()
    await SsoStore(stack.nc, stack.config.box).configure(
        group_id,
        preset="generic",
        client_id=CLIENT_ID,
        client_secret=CLIENT_SECRET,
        allowed_domain=None,
        tenant=None,
        discovery_url=provider.issuer,
        actor="test:operator",
    )
    return group_id


class Staff:
    """The config service's staff tables, for seeding users and reading them back."""

    def __init__(self, env: dict[str, str]) -> None:
        settings = StaggerConfig(
            var_dir=Path(env["STAGGER_VAR_DIR"]), database_url=env.get("STAGGER_DATABASE_URL")
        )
        self.engine = create_engine(settings.service_database_url("config"))
        self.store = StaffStore(session_factory(self.engine))

    async def add(self, group_id: str, role: str, status: str) -> UserRow:
        user_id = uuid.uuid4().hex[:16]
        email = f"{role.replace('_', '-')}-{user_id[:6]}@smiles.example"
        now = datetime.now(UTC)
        await self.store.add_user(
            {
                "user_id": user_id,
                "group_id": group_id,
                "email": email,
                "name": "",
                "role": role,
                "sites": [],
                "status": status,
                "created_at": now,
                "updated_at": now,
            },
            {
                "token_hash": uuid.uuid4().hex * 2,
                "user_id": user_id,
                "expires_at": now,
                "created_at": now,
            },
        )
        user = await self.store.user(user_id)
        assert user is not None
        return user


@pytest.fixture(scope="module")
async def staff(stack: ConsoleStack) -> AsyncIterator[Staff]:
    made = Staff(stack.env)
    try:
        yield made
    finally:
        await made.engine.dispose()


async def start_sso(page: Any, base_url: str, group_id: str) -> None:
    """Stagger's sign-in page: single sign-on for the group."""
    await page.goto(f"{base_url}/console/login")
    await page.get_by_label("Group").fill(group_id)
    await page.get_by_role("button", name="Continue with your identity provider").click()


async def sign_in_with_provider(page: Any, base_url: str, group_id: str, email: str) -> None:
    """From Stagger's sign-in page through the provider's, as a person would."""
    await start_sso(page, base_url, group_id)
    await page.locator("input[name=login]").fill(email)
    await page.locator("input[name=password]").fill("anything")
    await page.locator("button[type=submit]").click()


async def test_an_invited_user_signs_in_for_the_first_time(
    stack: ConsoleStack, provider: OpenIdProvider, staff: Staff, page: Any
) -> None:
    group_id = await sso_group(stack, provider)
    invited = await staff.add(group_id, "auditor", "invited")

    await sign_in_with_provider(page, stack.url, group_id, invited.email)

    await expect(page.get_by_role("heading", level=1, name="Sites")).to_be_visible()
    await expect(page.locator(".role")).to_contain_text(group_id)
    await screenshot(page, "sso-first-sign-in")
    now = await staff.store.user(invited.user_id)
    assert now is not None and now.status == "active"


async def test_a_user_of_another_group_is_refused(
    stack: ConsoleStack, provider: OpenIdProvider, staff: Staff, page: Any
) -> None:
    group_id = await sso_group(stack, provider)
    other = await stack.config.create_group()
    stranger = await staff.add(other, "group_admin", "active")

    await sign_in_with_provider(page, stack.url, group_id, stranger.email)

    await expect(page.get_by_role("alert")).to_have_text(REFUSED)
    await screenshot(page, "sso-other-group-refused")
    await page.goto(f"{stack.url}/console/")
    await expect(page).to_have_url(f"{stack.url}/console/login?next=%2Fconsole%2F")


async def test_an_unverified_email_is_refused(
    stack: ConsoleStack, provider: OpenIdProvider, staff: Staff, page: Any
) -> None:
    group_id = await sso_group(stack, provider)
    user = await staff.add(group_id, "auditor", "active")
    local, domain = user.email.split("@")

    await sign_in_with_provider(page, stack.url, group_id, f"{local}+unverified@{domain}")

    await expect(page.get_by_role("alert")).to_have_text(REFUSED)


async def test_a_disabled_users_open_session_ends(
    stack: ConsoleStack, provider: OpenIdProvider, staff: Staff, browser: Any, page: Any
) -> None:
    group_id = await sso_group(stack, provider)
    admin = await staff.add(group_id, "group_admin", "active")
    member = await staff.add(group_id, "site_manager", "active")

    await sign_in_with_provider(page, stack.url, group_id, member.email)
    await expect(page.get_by_role("heading", level=1, name="Sites")).to_be_visible()

    admin_context = await browser.new_context()
    try:
        admin_page = await admin_context.new_page()
        await sign_in_with_provider(admin_page, stack.url, group_id, admin.email)
        await expect(admin_page.get_by_role("heading", level=1, name="Sites")).to_be_visible()
        await admin_page.goto(f"{stack.url}/console/staff")
        row = admin_page.get_by_role("row").filter(has_text=member.email)
        await row.get_by_role("button", name="Disable").click()
        await expect(admin_page.get_by_role("row").filter(has_text=member.email)).to_contain_text(
            "disabled"
        )
    finally:
        await admin_context.close()

    await page.reload()
    await expect(page).to_have_url(f"{stack.url}/console/login?next=%2Fconsole%2F")
    # Nor can they come back through the provider (still signed in there, so it answers
    # at once).
    await start_sso(page, stack.url, group_id)
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)


async def test_repeated_refusals_are_throttled(
    stack: ConsoleStack, provider: OpenIdProvider, staff: Staff, page: Any
) -> None:
    group_id = await sso_group(stack, provider)
    stranger = await staff.add(await stack.config.create_group(), "auditor", "active")

    await sign_in_with_provider(page, stack.url, group_id, stranger.email)
    await expect(page.get_by_role("alert")).to_have_text(REFUSED)
    for _ in range(4):  # the provider remembers them: straight back to Stagger each time
        await start_sso(page, stack.url, group_id)
        await expect(page.get_by_role("alert")).to_have_text(REFUSED)

    await start_sso(page, stack.url, group_id)
    await expect(page.get_by_role("alert")).to_contain_text("Too many failed sign-ins")


async def test_the_client_secret_is_stored_sealed(
    stack: ConsoleStack, provider: OpenIdProvider
) -> None:
    group_id = await sso_group(stack, provider)
    raw = await stack.nc.jetstream().get_last_msg("ACCESS", f"access.sso.{group_id}")
    assert raw.data is not None
    assert CLIENT_SECRET.encode() not in raw.data
    assert b'"client_secret":"enc:v1:' in raw.data.replace(b" ", b"")


async def test_a_callback_that_did_not_start_here_is_refused(stack: ConsoleStack) -> None:
    import httpx

    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as web:
        forged = await web.get("/console/sso/callback", params={"state": "x", "code": "y"})
        assert forged.status_code == 400
        assert "did not start here" in forged.text
        unknown = await web.get("/console/sso", params={"group": "no-such-group"})
        assert unknown.status_code == 404
        assert "not set up" in unknown.text
        assert not web.cookies.get("stagger_sso"), "no sign-in was started"


async def test_a_group_admin_changes_the_settings_in_the_console(
    stack: ConsoleStack, provider: OpenIdProvider, staff: Staff, page: Any
) -> None:
    group_id = await sso_group(stack, provider)
    admin = await staff.add(group_id, "group_admin", "active")
    member = await staff.add(group_id, "auditor", "active")
    await sign_in_with_provider(page, stack.url, group_id, admin.email)
    await expect(page.get_by_role("heading", level=1, name="Sites")).to_be_visible()

    await page.goto(f"{stack.url}/console/staff")
    await page.get_by_role("link", name="Single sign-on").click()
    await expect(page.locator("#sso-current")).to_contain_text(provider.issuer)
    await expect(page.locator("#sso-callback")).to_have_text(f"{stack.url}/console/sso/callback")
    await page.get_by_label("Provider", exact=True).select_option("google")
    await page.get_by_role("button", name="Save").click()
    await expect(page.get_by_role("alert")).to_contain_text("allowed_domain")

    await page.get_by_label("Provider", exact=True).select_option("generic")
    await page.get_by_label("Allowed email domain").fill("elsewhere.example")
    await page.get_by_role("button", name="Save").click()  # the stored secret is kept
    await expect(page.locator(".notice")).to_have_text("Single sign-on is set up.")
    await expect(page.locator("#sso-current")).to_contain_text("@elsewhere.example")
    await screenshot(page, "sso-settings")

    other = await page.context.browser.new_context()
    try:
        member_page = await other.new_page()
        await sign_in_with_provider(member_page, stack.url, group_id, member.email)
        await expect(member_page.get_by_role("alert")).to_have_text(REFUSED)  # not that domain
    finally:
        await other.close()

    await page.get_by_role("button", name="Turn single sign-on off").click()
    await expect(page.locator("#sso-current")).to_contain_text("Off")
