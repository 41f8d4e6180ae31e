"""The console behind a TLS proxy, and sessions that end everywhere when signed out.

Real config service processes on the session's nats-server sharing one PostgreSQL database
(where the sessions are kept): two replicas of a plain-http deployment, one whose public URL
is https, one behind a trusted proxy. Cookies are handled by
hand (no client cookie jar), so a copied cookie is exactly the string a thief would replay.
"""

from __future__ import annotations

import contextlib
import json
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import nats
import pytest
from nats.aio.client import Client

from services.config.adapters.settings_store import SettingsStore
from services.config.handlers import ConfigHandlers
from shared.bus.topology import SETTINGS, ensure_streams
from shared.eventstore import EventStore
from shared.secrets import SecretBox, generate_key
from tests.conftest import delete_all_streams
from tests.support.postgres import PostgresServer, create_database, drop_database
from tests.support.processes import ServiceProcess, service_env, start_service
from tests.support.services import require
from tests.support.staff import StaffLogin, seed_staff
from tests.support.waiting import wait_until

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
COOKIE = "stagger_console"
PUBLIC = "https://console.example.test"
FORWARDED = {"X-Forwarded-Proto": "https", "X-Forwarded-For": "203.0.113.7"}


@dataclass
class Consoles:
    plain: list[ServiceProcess]
    https: ServiceProcess
    proxied: ServiceProcess
    nc: Client
    box: SecretBox
    env: dict[str, str]

    async def user(self, role: str = "auditor") -> StaffLogin:
        """A user of a new group (group admins with password and TOTP, others password only:
        a TOTP code works once, and one test signs one user in four times)."""
        group = f"sess-{uuid.uuid4().hex[:8]}"
        handlers = ConfigHandlers(
            self.nc, SettingsStore(EventStore(self.nc, SETTINGS)), self.box, None
        )
        await handlers.create_group(group, "Session Group", {}, actor="test:operator")
        return await seed_staff(self.env, self.box, group, role)


@pytest.fixture(scope="module")
async def consoles(
    nats_url: str,
    tmp_path_factory: pytest.TempPathFactory,
    postgres_server: PostgresServer | str,
) -> AsyncIterator[Consoles]:
    if isinstance(postgres_server, str):
        require(False, "PostgreSQL", postgres_server)
        return
    database = await create_database(postgres_server.admin_url)
    nc = await nats.connect(nats_url)
    await delete_all_streams(nc)
    await ensure_streams(nc.jetstream())
    key = generate_key()

    def env(**extra: str) -> dict[str, str]:
        return service_env(
            nats_url,
            tmp_path_factory.mktemp("console-sessions"),
            database_url=database,
            extra={"STAGGER_SECRET_KEY": key, **extra},
        )

    started: list[ServiceProcess] = []
    envs = [
        env(),
        env(),
        env(STAGGER_PUBLIC_URL=PUBLIC),
        env(STAGGER_TRUSTED_PROXIES="10.9.0.0/16, 127.0.0.1/32"),
    ]
    try:
        # The first one migrates the shared database; the others find it ready.
        started.append(start_service("config", envs[0]))
        for each in envs[1:]:
            started.append(start_service("config", each, wait=False))
        for service in started:
            service.wait_ready()
        yield Consoles(started[:2], started[2], started[3], nc, SecretBox([key.encode()]), envs[0])
    finally:
        for service in started:
            service.stop()
        with contextlib.suppress(Exception):
            await nc.close()
        await drop_database(postgres_server.admin_url, database)


def _cookie(response: httpx.Response) -> tuple[str, str] | None:
    """(value, attributes in lower case) of the console cookie a response sets."""
    for header in response.headers.get_list("set-cookie"):
        pair, _, attributes = header.partition(";")
        name, _, value = pair.partition("=")
        if name.strip() == COOKIE:
            return value.strip(), attributes.lower()
    return None


async def _get(url: str, path: str, cookie: str | None, **headers: str) -> httpx.Response:
    if cookie:
        headers["Cookie"] = f"{COOKIE}={cookie}"
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.get(path, headers=headers)


async def _post(
    url: str, path: str, cookie: str, data: dict[str, str], **headers: str
) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
        return await client.post(
            path, data=data, headers={"Cookie": f"{COOKIE}={cookie}", **headers}
        )


async def _login_form(url: str, **headers: str) -> tuple[str, str, str]:
    """(anonymous cookie, its attributes, CSRF token) from the login page."""
    page = await _get(url, "/console/login", None, **headers)
    assert page.status_code == 200
    found = _cookie(page)
    assert found is not None
    csrf = CSRF.search(page.text)
    assert csrf is not None
    return found[0], found[1], csrf.group(1)


async def _sign_in(url: str, user: StaffLogin, **headers: str) -> httpx.Response:
    cookie, _, csrf = await _login_form(url, **headers)
    return await _post(url, "/console/login", cookie, user.form(csrf), **headers)


async def _signed_in(url: str, user: StaffLogin) -> str:
    answer = await _sign_in(url, user)
    assert answer.status_code == 303, answer.text
    found = _cookie(answer)
    assert found is not None
    return found[0]


async def _home(url: str, cookie: str) -> int:
    return (await _get(url, "/console/", cookie)).status_code


async def test_signing_out_ends_every_copy_of_the_cookie(consoles: Consoles) -> None:
    first, second = (s.url for s in consoles.plain)
    user = await consoles.user()
    cookie = await _signed_in(first, user)
    other_session = await _signed_in(second, user)
    copied = str(cookie)
    # The copy works anywhere while the session lives: replicas share no memory.
    assert await _home(first, cookie) == 200
    assert await _home(second, copied) == 200

    home = await _get(first, "/console/", cookie)
    csrf = CSRF.search(home.text)
    assert csrf is not None
    out = await _post(first, "/console/logout", cookie, {"csrf_token": csrf.group(1)})
    assert out.status_code == 303

    # Every copy of the signed-out cookie is refused, on either replica.
    for url in (first, second):
        refused = await _get(url, "/console/", copied)
        assert refused.status_code == 303, url
        assert refused.headers["location"].startswith("/console/login")
    # A write with the copy (and the CSRF token it carries) is refused too.
    write = await _post(
        second,
        "/console/optouts",
        copied,
        {"csrf_token": csrf.group(1), "channel": "sms", "recipient": "+447700900123"},
    )
    assert write.status_code == 401 and "Signed out" in write.text
    # Another session of the same user is not affected; signing in again works.
    assert await _home(first, other_session) == 200
    assert await _home(second, await _signed_in(second, user)) == 200

    # Signing in over a signed-in session (same browser) ends the previous session too.
    page = await _get(first, "/console/login", other_session)
    csrf = CSRF.search(page.text)
    assert csrf is not None
    again = await _post(first, "/console/login", other_session, user.form(csrf.group(1)))
    assert again.status_code == 303
    renewed = _cookie(again)
    assert renewed is not None and renewed[0] != other_session
    assert await _home(second, renewed[0]) == 200
    assert await _home(second, other_session) == 303


async def test_https_public_url_makes_the_cookie_secure_and_fixes_the_origin(
    consoles: Consoles,
) -> None:
    url = consoles.https.url
    _, attributes, _ = await _login_form(url)
    assert "secure" in attributes
    user = await consoles.user()
    # The address behind the proxy is another origin than the public one: refused.
    for origin in ("https://evil.example", url, "http://console.example.test"):
        refused = await _sign_in(url, user, Origin=origin)
        assert refused.status_code == 403, origin
        assert "Form expired" in refused.text
    accepted = await _sign_in(url, user, Origin=PUBLIC)
    assert accepted.status_code == 303, accepted.text
    found = _cookie(accepted)
    assert found is not None and "secure" in found[1]


async def test_forwarded_headers_count_only_from_trusted_proxies(consoles: Consoles) -> None:
    user = await consoles.user()
    untrusted, trusted = consoles.plain[0], consoles.proxied

    # From a peer that is not a trusted proxy the headers change nothing: plain http, the
    # TCP peer is the client.
    _, attributes, _ = await _login_form(untrusted.url, **FORWARDED)
    assert "secure" not in attributes
    assert (await _sign_in(untrusted.url, user, **FORWARDED)).status_code == 303
    seen = await wait_until(
        lambda: _sign_in_clients(untrusted), timeout=10, message="sign-in logged"
    )
    assert "203.0.113.7" not in seen and "127.0.0.1" in seen

    # From a trusted proxy: the browser spoke https (Secure cookie), and the client is the
    # address the proxy forwarded.
    _, attributes, _ = await _login_form(trusted.url)
    assert "secure" not in attributes  # no forwarded headers: plain http
    _, attributes, _ = await _login_form(trusted.url, **FORWARDED)
    assert "secure" in attributes
    assert (await _sign_in(trusted.url, user, **FORWARDED)).status_code == 303
    seen = await wait_until(lambda: _sign_in_clients(trusted), timeout=10, message="logged")
    assert seen == {"203.0.113.7"}


def _sign_in_clients(service: ServiceProcess) -> set[str]:
    """Client addresses of the service's logged console sign-ins."""
    found = set()
    for line in list(service.lines):
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and entry.get("message") == "console sign-in":
                found.add(str(entry.get("client")))
    return found
