"""Staff accounts end to end: an invitation arrives at the real SMTP sink and is accepted,
roles change, disabling and signing out everywhere end sessions at once, and group admins
manage API tokens; every change is in the audit trail."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import httpx

from services.config.staff import credentials
from tests.integration.staff.conftest import (
    LINK,
    TOTP_KEY,
    StaffStack,
    browser_client,
    csrf_of,
)
from tests.support.smtp import smtp_servers  # noqa: F401
from tests.support.staff import CSRF, StaffLogin, seed_staff, sign_in
from tests.support.waiting import wait_until


async def _invite(
    stack: StaffStack, admin: StaffLogin, email: str, role: str, sites: list[str]
) -> httpx.Response:
    async with browser_client(stack, admin) as client:
        return await _invite_as(client, email, role, sites)


async def _invite_as(
    client: httpx.AsyncClient, email: str, role: str, sites: list[str]
) -> httpx.Response:
    csrf = await csrf_of(client, "/console/staff")
    return await client.post(
        "/console/staff/invite",
        data={"csrf_token": csrf, "email": email, "role": role, "sites": sites},
    )


async def _accept(link: str, password: str) -> tuple[httpx.Response, str]:
    """Open the invitation, scan the key, answer with a password and a code."""
    async with httpx.AsyncClient(timeout=30) as client:
        page = await client.get(link)
        assert page.status_code == 200, page.text
        key = TOTP_KEY.search(page.text)
        csrf = CSRF.search(page.text)
        assert key is not None and csrf is not None
        code = credentials.totp_now(key.group(1), datetime.now(UTC))
        answer = await client.post(
            link,
            data={
                "csrf_token": csrf.group(1),
                "password": password,
                "repeat": password,
                "code": code,
            },
        )
        return answer, key.group(1)


async def test_an_invitation_arrives_by_email_and_works_once(stack: StaffStack) -> None:
    group = await stack.group()
    mine, theirs = group["sites"]
    email = f"nurse-{uuid.uuid4().hex[:6]}@example.org"
    invited = await _invite(stack, group["admin"], email, "site_manager", [mine])
    assert invited.status_code == 303, invited.text

    mail = await stack.mail_to(email)
    assert "invited" in str(mail["Subject"])
    body = mail.get_content()  # type: ignore[attr-defined]
    found = LINK.search(body)
    assert found is not None, body
    link = found.group(1).replace("http://127.0.0.1:8080", stack.url)

    # A too-short password is refused, naming the field; nothing is used up.
    async with httpx.AsyncClient(timeout=30) as client:
        page = await client.get(link)
        csrf = CSRF.search(page.text)
        assert csrf is not None
        short = await client.post(
            link, data={"csrf_token": csrf.group(1), "password": "short", "repeat": "short"}
        )
        assert short.status_code == 422 and "at least 12 characters" in short.text

    password = "a long enough passphrase"
    accepted, key = await _accept(link, password)
    assert accepted.status_code == 200 and "Your account is ready" in accepted.text
    again = await httpx.AsyncClient(timeout=30).get(link)
    assert again.status_code == 404 and "already been used" in again.text

    # The new user signs in and sees their own site only.
    user = StaffLogin("", group["group_id"], email, password, "site_manager", key)
    user._last_step = int(datetime.now(UTC).timestamp()) // credentials.STEP  # code just used
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        answer = await sign_in(client, user)
        assert answer.status_code == 303, answer.text
        home = await client.get("/console/")
        assert "High Street" in home.text and "Riverside" not in home.text
        assert (await client.get(f"/console/sites/{theirs}")).status_code == 404
        assert (await client.get("/console/staff")).status_code == 403

    trail = await wait_until(
        lambda: _types(stack, group["token"], "stagger.staff."),
        timeout=20,
        message="invitation and activation in the audit trail",
    )
    assert {"stagger.staff.invited", "stagger.staff.activated"} <= trail
    records = await stack.trail(group["token"], "stagger.staff.invited")
    assert all(link.rsplit("/", 1)[1] not in str(r) for r in records)  # never the link


async def _types(stack: StaffStack, token: str, prefix: str) -> set[str] | None:
    found = {r["type"].rpartition(".v")[0] for r in await stack.trail(token, prefix)}
    wanted = {"stagger.staff.invited", "stagger.staff.activated"}
    return found if wanted <= found else None


async def test_an_invitation_goes_through_the_groups_own_account(
    stack: StaffStack,
    smtp_servers,  # noqa: F811
) -> None:
    server = smtp_servers()
    group = await stack.group(
        email={
            "address": "reception@smile.example",
            "display_name": "Smile Reception",
            "smtp": {"host": "127.0.0.1", "port": server.port, "security": "none"},
        }
    )
    email = f"auditor-{uuid.uuid4().hex[:6]}@example.org"
    assert (await _invite(stack, group["admin"], email, "auditor", [])).status_code == 303
    sent = await wait_until(
        lambda: [m for m in server.parsed() if email in str(m["To"])],
        timeout=20,
        message="mail at the group's server",
    )
    assert "reception@smile.example" in str(sent[0]["From"])
    assert not [m for m in stack.sink.messages() if email in str(m["To"])]


async def test_bad_invitations_are_refused_by_field(stack: StaffStack) -> None:
    group = await stack.group()
    admin = group["admin"]
    async with browser_client(stack, admin) as client:
        for email, role, sites, words in (
            ("not-an-address", "auditor", [], "not a valid email"),
            ("x@example.org", "site_manager", [], "at least one site"),
            ("x@example.org", "owner", [], "must be one of"),
            (admin.email, "auditor", [], "already exists"),
        ):
            answer = await _invite_as(client, email, role, sites)
            assert answer.status_code == 422 and words in answer.text, email


async def test_a_role_change_applies_at_once(stack: StaffStack) -> None:
    group = await stack.group()
    mine = group["sites"][0]
    manager = await seed_staff(
        stack.config.env, stack.config.box, group["group_id"], "site_manager", [mine]
    )
    async with browser_client(stack, manager) as theirs:
        assert (await theirs.get(f"/console/sites/{mine}/wizard/sms")).status_code == 200
        async with browser_client(stack, group["admin"]) as admin:
            csrf = await csrf_of(admin, "/console/staff")
            changed = await admin.post(
                f"/console/staff/{manager.user_id}/role",
                data={"csrf_token": csrf, "role": "auditor"},
            )
            assert changed.status_code == 303, changed.text
        # Their session ended with the change; signing in again gives the new role.
        assert (await theirs.get("/console/")).status_code == 303
    async with browser_client(stack, manager) as again:
        assert (await again.get(f"/console/sites/{mine}/wizard/sms")).status_code == 403
        assert "auditor" in (await again.get("/console/account")).text
    changes = await wait_until(
        lambda: stack.trail(group["token"], "stagger.staff.role_changed"),
        timeout=20,
        message="role change in the trail",
    )
    assert changes[-1]["data"]["old_role"] == "site_manager"
    assert changes[-1]["actor"] == f"user:{group['admin'].user_id}"


async def test_disabling_ends_sessions_at_once_and_keeps_the_last_admin(
    stack: StaffStack,
) -> None:
    group = await stack.group()
    auditor = await seed_staff(stack.config.env, stack.config.box, group["group_id"], "auditor")
    async with browser_client(stack, auditor) as theirs:
        assert (await theirs.get("/console/")).status_code == 200
        async with browser_client(stack, group["admin"]) as admin:
            csrf = await csrf_of(admin, "/console/staff")
            gone = await admin.post(
                f"/console/staff/{auditor.user_id}/disable", data={"csrf_token": csrf}
            )
            assert gone.status_code == 303
            # The group's only admin cannot disable themselves.
            last = await admin.post(
                f"/console/staff/{group['admin'].user_id}/disable", data={"csrf_token": csrf}
            )
            assert last.status_code == 422 and "last active group admin" in last.text
        answer = await theirs.get("/console/")
        assert answer.status_code == 303 and answer.headers["location"].startswith("/console/login")
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        refused = await sign_in(client, auditor)
        assert refused.status_code == 401 and "disabled" in refused.text
    ended = await wait_until(
        lambda: stack.trail(group["token"], "stagger.staff.sessions_ended"),
        timeout=20,
        message="sessions ended in the trail",
    )
    assert ended[-1]["data"]["reason"] == "disabled" and ended[-1]["data"]["sessions"] == 1


async def test_sign_out_everywhere(stack: StaffStack) -> None:
    group = await stack.group()
    user = await seed_staff(stack.config.env, stack.config.box, group["group_id"], "auditor")
    async with browser_client(stack, user) as laptop, browser_client(stack, user) as phone:
        assert '<dd id="session-count">2</dd>' in (await laptop.get("/console/account")).text
        csrf = await csrf_of(laptop)
        out = await laptop.post("/console/account/sign-out-everywhere", data={"csrf_token": csrf})
        assert out.status_code == 200 and "signed out on every device" in out.text
        for client in (laptop, phone):
            assert (await client.get("/console/")).status_code == 303


async def test_group_admins_create_list_and_revoke_api_tokens(stack: StaffStack) -> None:
    group = await stack.group()
    site = group["sites"][0]
    async with browser_client(stack, group["admin"]) as admin:
        csrf = await csrf_of(admin, "/console/tokens")
        bad = await admin.post(
            "/console/tokens",
            data={"csrf_token": csrf, "label": "x", "role": "sender", "expires_in": "soon"},
        )
        assert bad.status_code == 422 and "not a duration" in bad.text
        made = await admin.post(
            "/console/tokens",
            data={
                "csrf_token": csrf,
                "label": "Practice system",
                "role": "sender",
                "sites": [site],
                "expires_in": "30d",
            },
        )
        assert made.status_code == 200
        token = made.text.split('id="new-token">', 1)[1].split("<", 1)[0]
        assert token.startswith("stg_")
        token_id = token[4:].split(".")[0]

        async with stack.config.client(token) as api:
            used = await api.post(f"/api/v1/sites/{site}/messages", json={"messages": []})
            assert used.status_code != 401, used.text

        async def listed() -> str | None:
            page = (await admin.get("/console/tokens")).text
            row = page.split(f'data-token="{token_id}"', 1)
            return row[1].split("</tr>", 1)[0] if len(row) == 2 else None

        row = await wait_until(listed, timeout=20, message="token listed")
        assert "Practice system" in row and "sender" in row and "never" not in row
        assert token.split(".")[1] not in (await admin.get("/console/tokens")).text
        # Console sessions' own tokens are not listed.
        assert "console session" not in (await admin.get("/console/tokens")).text

        revoked = await admin.post(f"/console/tokens/{token_id}/revoke", data={"csrf_token": csrf})
        assert revoked.status_code == 303

        async def refused() -> bool:
            async with stack.config.client(token) as api:
                answer = await api.get(f"/api/v1/groups/{group['group_id']}/sites")
            return answer.status_code == 401

        await wait_until(refused, timeout=20, message="revoked token refused")


async def test_only_group_admins_manage_staff_and_tokens(stack: StaffStack) -> None:
    group = await stack.group()
    auditor = await seed_staff(stack.config.env, stack.config.box, group["group_id"], "auditor")
    async with browser_client(stack, auditor) as client:
        for path in ("/console/staff", "/console/tokens"):
            assert (await client.get(path)).status_code == 403
        csrf = await csrf_of(client)
        invite = await client.post(
            "/console/staff/invite",
            data={"csrf_token": csrf, "email": "x@example.org", "role": "group_admin"},
        )
        assert invite.status_code == 403


async def test_a_user_sets_up_an_authenticator_and_then_needs_its_code(
    stack: StaffStack,
) -> None:
    group = await stack.group()
    auditor = await seed_staff(stack.config.env, stack.config.box, group["group_id"], "auditor")
    async with browser_client(stack, auditor) as client:
        page = await client.get("/console/account/authenticator")
        key = TOTP_KEY.search(page.text)
        csrf = CSRF.search(page.text)
        assert key is not None and csrf is not None
        wrong = await client.post(
            "/console/account/authenticator", data={"csrf_token": csrf.group(1), "code": "000000"}
        )
        assert wrong.status_code == 422 and "not the one your app shows" in wrong.text
        code = credentials.totp_now(key.group(1), datetime.now(UTC))
        done = await client.post(
            "/console/account/authenticator", data={"csrf_token": csrf.group(1), "code": code}
        )
        assert done.status_code == 303
        assert "authenticator app" in (await client.get("/console/account")).text
    auditor.totp_secret = key.group(1)
    auditor._last_step = int(datetime.now(UTC).timestamp()) // credentials.STEP
    async with httpx.AsyncClient(base_url=stack.url, timeout=30) as client:
        page = await client.get("/console/login")
        csrf = CSRF.search(page.text)
        assert csrf is not None
        without = await client.post(
            "/console/login",
            data={
                "csrf_token": csrf.group(1),
                "email": auditor.email,
                "password": auditor.password,
            },
        )
        assert without.status_code == 401
        assert (await sign_in(client, auditor)).status_code == 303
    enrolled = await wait_until(
        lambda: stack.trail(group["token"], "stagger.staff.totp_enrolled"),
        timeout=20,
        message="enrolment in the trail",
    )
    assert enrolled[-1]["actor"] == f"user:{auditor.user_id}"


async def test_the_staff_api_for_a_group_admins_token(stack: StaffStack) -> None:
    group = await stack.group()
    group_id, token = group["group_id"], group["token"]
    base = f"/api/v1/groups/{group_id}/staff"
    email = f"api-{uuid.uuid4().hex[:6]}@example.org"
    async with stack.config.client(token) as api:
        bad = await api.post(base, json={"email": email, "role": "owner"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "role"
        made = await api.post(base, json={"email": email, "role": "auditor"})
        assert made.status_code == 201, made.text
        user = made.json()
        assert user["status"] == "invited" and "link" not in made.text
        listed = (await api.get(base)).json()
        assert {u["email"] for u in listed} >= {email, group["admin"].email}
        role = await api.put(
            f"{base}/{user['user_id']}/role",
            json={"role": "site_manager", "sites": [group["sites"][0]]},
        )
        assert role.status_code == 200 and role.json()["sites"] == [group["sites"][0]]
        gone = await api.post(f"{base}/{user['user_id']}/disable")
        assert gone.status_code == 200 and gone.json()["status"] == "disabled"
        missing = await api.post(f"{base}/nobody/disable")
        assert missing.status_code == 404
    await stack.mail_to(email)
    auditor = await stack.config.token(group_id, "auditor")
    async with stack.config.client(auditor) as api:
        assert (await api.get(base)).status_code == 200
        assert (
            await api.post(base, json={"email": "y@example.org", "role": "auditor"})
        ).status_code == 403
    other = await stack.config.create_group()
    async with stack.config.client(await stack.config.token(other, "group_admin")) as api:
        assert (await api.get(base)).status_code == 404
    changes = await wait_until(
        lambda: stack.trail(token, "stagger.staff.disabled"), timeout=20, message="trail"
    )
    assert changes[-1]["actor"].startswith("token:")
