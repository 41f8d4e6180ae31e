"""The console over plain HTTP (no browser): sessions, CSRF, roles, the one-event Finish."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator

import httpx

from tests.browser.conftest import ConsoleStack
from tests.support.staff import StaffLogin, sign_in

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@contextlib.asynccontextmanager
async def signed_in(
    stack: ConsoleStack, user: StaffLogin
) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    """A client with a console session of `user`, and the session's CSRF token."""
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        answer = await sign_in(client, user)
        assert answer.status_code == 303, answer.text
        home = await client.get("/console/")
        assert home.status_code == 200
        yield client, CSRF.search(home.text).group(1)  # type: ignore[union-attr]


async def test_root_redirects_and_login_is_required(stack: ConsoleStack) -> None:
    async with httpx.AsyncClient(base_url=stack.url) as client:
        assert (await client.get("/")).headers["location"] == "/console/"
        answer = await client.get("/console/")
        assert answer.status_code == 303
        assert answer.headers["location"].startswith("/console/login")
        cookie = answer.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=lax" in cookie and "path=/console" in cookie


async def test_post_without_csrf_is_refused(stack: ConsoleStack) -> None:
    group = await stack.group()
    async with signed_in(stack, group["admin_user"]) as (client, csrf):
        site = group["site"]
        for path in (
            "/console/logout",
            f"/console/sites/{site}/wizard/sms",
            f"/console/sites/{site}/wizard/restart",
            f"/console/sites/{site}/send-now",
            f"/console/sites/{site}/outbox/reset-failed",
            "/console/optouts",
        ):
            missing = await client.post(path, data={"channel": "sms", "action": "next"})
            assert missing.status_code == 403, path
            wrong = await client.post(path, data={"csrf_token": csrf + "x", "channel": "sms"})
            assert wrong.status_code == 403, path
        # The session still works: nothing above logged it out.
        assert (await client.get("/console/")).status_code == 200


async def test_secrets_never_in_pages_and_tokens_do_not_sign_in(stack: ConsoleStack) -> None:
    group = await stack.group()
    user = group["admin_user"]
    async with signed_in(stack, user) as (client, _):
        for path in ("/console/", f"/console/sites/{group['site']}", "/console/account"):
            body = (await client.get(path)).text
            assert user.password not in body and str(user.totp_secret) not in body
            assert "stg_" not in body  # the session's own API token is never shown
        assert "stg_" not in str(client.cookies.get("stagger_console"))
    async with httpx.AsyncClient(base_url=stack.url) as anon:
        page = await anon.get("/console/login")
        assert "API token" not in page.text
        csrf = CSRF.search(page.text).group(1)  # type: ignore[union-attr]
        pasted = await anon.post(
            "/console/login",
            data={"csrf_token": csrf, "email": user.email, "password": group["admin"]},
        )
        assert pasted.status_code == 401
        assert "not right" in pasted.text


async def test_auditor_reads_but_cannot_write(stack: ConsoleStack) -> None:
    group = await stack.group()
    async with signed_in(stack, group["auditor_user"]) as (client, csrf):
        site = group["site"]
        before = await stack.site_events(site)
        page = await client.get(f"/console/sites/{site}")
        assert page.status_code == 200
        assert "Open the setup wizard" not in page.text and "Send now" not in page.text
        outbox = await client.get(f"/console/sites/{site}/outbox")
        assert outbox.status_code == 200 and "Reset failed" not in outbox.text
        assert (await client.get(f"/console/sites/{site}/wizard/sms")).status_code == 403
        for path, data in (
            (f"/console/sites/{site}/wizard/sms", {"action": "next"}),
            (f"/console/sites/{site}/send-now", {"channel": "sms"}),
            (f"/console/sites/{site}/outbox/reset-failed", {"channel": "sms"}),
            ("/console/optouts", {"channel": "sms", "recipient": "+447700900123"}),
        ):
            refused = await client.post(path, data={"csrf_token": csrf, **data})
            assert refused.status_code == 403, path
        assert await stack.site_events(site) == before  # nothing was written


async def test_finish_appends_exactly_one_event_and_conflict_is_shown(stack: ConsoleStack) -> None:
    group = await stack.group()
    site = group["site"]
    async with signed_in(stack, group["admin_user"]) as (client, csrf):
        assert (await client.get(f"/console/sites/{site}/wizard")).status_code == 303
        before = await stack.site_events(site)
        form = {
            "csrf_token": csrf,
            "action": "next",
            "sms.mode": "staggered",
            "sms.every_minutes": "4",
            "sms.warn_after_days": "3",
        }
        moved = await client.post(f"/console/sites/{site}/wizard/sms", data=form)
        assert moved.status_code == 303
        assert moved.headers["location"].endswith("/wizard/finish")
        assert await stack.site_events(site) == before  # nothing saved before Finish
        finish = await client.post(
            f"/console/sites/{site}/wizard/finish", data={"csrf_token": csrf, "action": "finish"}
        )
        assert finish.status_code == 303, finish.text
        assert await stack.site_events(site) == before + 1
        async with stack.config.client(group["admin"]) as api:
            saved = (await api.get(f"/api/v1/sites/{site}")).json()["settings"]["sms"]
        assert saved["every_minutes"] == 4 and saved["warn_after_days"] == 3

        # A change made elsewhere while the wizard is open: Finish shows the conflict.
        await client.get(f"/console/sites/{site}/wizard")
        await client.post(
            f"/console/sites/{site}/wizard/sms",
            data={**form, "sms.every_minutes": "6", "action": "save"},
        )
        async with stack.config.client(group["admin"]) as api:
            current = await api.get(f"/api/v1/sites/{site}")
            changed = await api.patch(
                f"/api/v1/sites/{site}/settings",
                json={"set": {"sms": {"every_minutes": 2}}},
                headers={"If-Match": current.headers["etag"]},
            )
            assert changed.status_code == 200
        count = await stack.site_events(site)
        conflict = await client.post(
            f"/console/sites/{site}/wizard/finish", data={"csrf_token": csrf, "action": "finish"}
        )
        assert conflict.status_code == 409
        assert "Someone changed these settings meanwhile" in conflict.text
        assert await stack.site_events(site) == count


async def test_validation_errors_are_named_next_to_their_field(stack: ConsoleStack) -> None:
    group = await stack.group()
    site = group["site"]
    async with signed_in(stack, group["admin_user"]) as (client, csrf):
        answer = await client.post(
            f"/console/sites/{site}/wizard/account",
            data={
                "csrf_token": csrf,
                "action": "next",
                "email.enabled.present": "1",
                "email.address": "not-an-address",
                "email.smtp.port": "abc",
            },
        )
        assert answer.status_code == 422
        html = answer.text
        assert 'id="f-email-address-error"' in html and "not a valid email address" in html
        assert 'id="f-email-smtp-port-error"' in html and "enter a number" in html
        assert re.search(r'id="f-email-address"[^>]*aria-invalid="true"', html)
