"""Outbound destinations: a site's provider URL and SMTP/IMAP hosts never reach cloud metadata,
and reach loopback or private networks only where the operator allows them
(`STAGGER_OUTBOUND_ALLOW`) — refused with 422 naming the field when written, and judged again
on every connection, since DNS (or the operator's list) can change after the write.

DNS: `localhost` resolves to loopback through the system resolver; names that must resolve to
a private or a metadata address get them from a resolver function given to the config
service (its composition root takes one), so no DNS server is involved — nothing else about
the service is replaced.
"""

from __future__ import annotations

import contextlib
import ipaddress
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from services.config.adapters.settings_store import SettingsStore
from services.config.composition import ConfigService
from services.config.handlers import ConfigHandlers
from shared.bus.topology import PROVIDERS, SETTINGS
from shared.config import StaggerConfig
from shared.domain.destinations import IPAddress
from shared.eventstore import EventStore
from shared.net.outbound import system_resolver
from shared.runtime.nats_server import free_port
from shared.runtime.service import running, serve_http
from shared.secrets import SecretBox, generate_key
from shared.tokens import issue_token
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    email,  # noqa: F401  (fixture)
    email_settings,
    queued,
)
from tests.integration.sms_gateway.conftest import sim, sim_process  # noqa: F401  (fixtures)
from tests.integration.sms_gateway.harness import (
    Sim,
    events,
    gateway_running,
    make_site,
    one_tick,
    provider_events,
    publish_tick,
    submit,
    terminal,
    wait_queued,
)
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)
from tests.support.waiting import wait_until

NAMES = {"mail.private.test": "10.1.2.3", "metadata.test": "169.254.169.254"}
"""Host names the test resolver answers for; every other name goes to the system resolver."""


async def names_resolver(host: str, port: int) -> list[IPAddress]:
    if host in NAMES:
        return [ipaddress.ip_address(NAMES[host])]
    return await system_resolver(host, port)


@contextlib.asynccontextmanager
async def config_api(nats_url: str, var_dir: Path, allow: str) -> AsyncIterator[str]:
    """The config service in this process, with the test resolver and this allow-list."""
    settings = StaggerConfig(
        nats_url=nats_url,
        var_dir=var_dir,
        http_port=free_port(),
        secret_key=generate_key(),  # type: ignore[arg-type]
        heartbeat_seconds=0.5,
        drain_timeout_seconds=5,
        outbound_allow=allow,
    )
    async with running(ConfigService(resolver=names_resolver), settings):
        yield f"http://127.0.0.1:{settings.http_port}"


async def admin_of_new_group(nc: Client) -> tuple[str, str]:
    group_id = f"g-{uuid.uuid4().hex[:8]}"
    box = SecretBox([generate_key().encode()])
    handlers = ConfigHandlers(nc, SettingsStore(EventStore(nc, SETTINGS)), box, None)
    await handlers.create_group(group_id, "Smile Group", {}, actor="test:operator")
    _, token = await issue_token(nc, group_id=group_id, role="group_admin", label="test")
    return group_id, token


async def _known(http: httpx.AsyncClient) -> bool:
    return (await http.get("/api/v1/me")).status_code == 200


REFUSED: list[tuple[str, dict[str, Any], str]] = [
    (
        "metadata URL",
        {"sms": {"provider": {"base_url": "http://169.254.169.254/latest/meta-data"}}},
        "sms.provider.base_url",
    ),
    ("metadata by name", {"email": {"imap": {"host": "metadata.test"}}}, "email.imap.host"),
    (
        "IPv6 link-local",
        {"sms": {"provider": {"base_url": "http://[fe80::a9fe:a9fe]:80/"}}},
        "sms.provider.base_url",
    ),
    ("loopback", {"email": {"smtp": {"host": "127.0.0.1", "port": 2525}}}, "email.smtp.host"),
    (
        "localhost",
        {"sms": {"provider": {"base_url": "http://localhost:8090"}}},
        "sms.provider.base_url",
    ),
    (
        "failover account to metadata",
        {"sms": {"secondary_provider": {"base_url": "http://169.254.169.254/latest"}}},
        "sms.secondary_provider.base_url",
    ),
    ("private", {"email": {"imap": {"host": "10.0.0.7"}}}, "email.imap.host"),
    ("DNS to private", {"email": {"smtp": {"host": "mail.private.test"}}}, "email.smtp.host"),
    ("CGNAT", {"email": {"smtp": {"host": "100.64.0.9"}}}, "email.smtp.host"),
    (
        "OAuth token endpoint to metadata",
        {"email": {"sign_in": {"token_url": "http://metadata.test/token"}}},
        "email.sign_in.token_url",
    ),
    (
        "Graph on a private network",
        {"email": {"sign_in": {"graph_url": "https://10.0.0.8/v1.0"}}},
        "email.sign_in.graph_url",
    ),
]


async def test_internal_destinations_are_refused_with_422_naming_the_field(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    group_id, token = await admin_of_new_group(nc)
    async with (
        config_api(nats_url, tmp_path / "config", allow="") as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http,
    ):
        await wait_until(lambda: _known(http), timeout=20, message="the token is known")
        site_id = f"s-{uuid.uuid4().hex[:8]}"
        # Creating a site with a refused destination is refused too, and stores nothing.
        created = await http.post(
            f"/api/v1/groups/{group_id}/sites",
            json={"site_id": site_id, "name": "High St", "settings": REFUSED[0][1]},
        )
        assert created.status_code == 422, created.text
        assert [e["field"] for e in created.json()["errors"]] == ["sms.provider.base_url"]
        assert (await http.get(f"/api/v1/sites/{site_id}")).status_code == 404
        created = await http.post(
            f"/api/v1/groups/{group_id}/sites", json={"site_id": site_id, "name": "High St"}
        )
        assert created.status_code == 201, created.text
        version = created.headers["ETag"]
        for what, patch, field in REFUSED:
            response = await http.patch(
                f"/api/v1/sites/{site_id}/settings",
                json={"set": patch},
                headers={"If-Match": version},
            )
            assert response.status_code == 422, (what, response.text)
            errors = response.json()["errors"]
            assert [e["field"] for e in errors] == [field], what
            assert "10.1.2.3" not in errors[0]["message"], "the kind, never the address"
        site = await http.get(f"/api/v1/sites/{site_id}")
        assert site.headers["ETag"] == version, "nothing was stored"
        # Group defaults are written through the same check.
        group = await http.get(f"/api/v1/groups/{group_id}")
        response = await http.patch(
            f"/api/v1/groups/{group_id}/defaults",
            json={"set": {"email": {"smtp": {"host": "mail.private.test"}}}},
            headers={"If-Match": group.headers["ETag"]},
        )
        assert response.status_code == 422, response.text
        assert [e["field"] for e in response.json()["errors"]] == ["email.smtp.host"]
        # A public address (and a name that does not resolve now) is fine.
        response = await http.patch(
            f"/api/v1/sites/{site_id}/settings",
            json={"set": {"email": {"smtp": {"host": "192.0.32.10"}}}},
            headers={"If-Match": version},
        )
        assert response.status_code == 200, response.text


async def test_the_operator_allow_list_opens_loopback_and_private_but_never_metadata(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    group_id, token = await admin_of_new_group(nc)
    allow = "127.0.0.0/8, ::1, localhost, 10.0.0.0/8, 100.64.0.0/10, fe80::/10x"
    with pytest.raises(ValueError, match="fe80::/10x"):
        StaggerConfig(outbound_allow=allow)  # a typo stops the service from starting
    allow = "127.0.0.0/8, ::1, localhost, 10.0.0.0/8, 100.64.0.0/10"
    async with (
        config_api(nats_url, tmp_path / "config", allow=allow) as url,
        httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as http,
    ):
        await wait_until(lambda: _known(http), timeout=20, message="the token is known")
        site_id = f"s-{uuid.uuid4().hex[:8]}"
        created = await http.post(
            f"/api/v1/groups/{group_id}/sites", json={"site_id": site_id, "name": "High St"}
        )
        version = created.headers["ETag"]
        for what, patch, field in REFUSED:
            response = await http.patch(
                f"/api/v1/sites/{site_id}/settings",
                json={"set": patch},
                headers={"If-Match": version},
            )
            if "metadata" in what or what.startswith("IPv6 link-local"):
                assert response.status_code == 422, (what, response.text)
                assert [e["field"] for e in response.json()["errors"]] == [field]
                assert "never" in response.json()["errors"][0]["message"]
            else:
                assert response.status_code == 200, (what, response.text)
                version = response.headers["ETag"]


# --- judged again at every connection ---------------------------------------------------------


async def test_smtp_host_allowed_when_written_is_refused_at_connect(
    email: EmailHarness,  # noqa: F811
    smtp_servers: Any,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Written while loopback was allowed; the gateway's list no longer allows it: nothing
    reaches the server and the account's status says why (retried with back-off, as a
    refused login is)."""
    server = smtp_servers()
    site = await email.make_site(email_settings(server.port))
    monkeypatch.setenv("STAGGER_OUTBOUND_ALLOW", "")
    async with email.gateway() as gw:
        await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await email.tick(site, 10, manual=True)

        async def refused() -> bool:
            found = [
                e
                for e in await email.events("PROVIDERS")
                if e.data.ok is False  # type: ignore[attr-defined]
            ]
            return bool(found)

        await wait_until(refused, timeout=30, message="the account's refusal")
        status = await email.rpc("account_status", {"site_id": site})
        assert status["ok"] is False
        assert (
            "loopback" in status["last_error"] and "STAGGER_OUTBOUND_ALLOW" in status["last_error"]
        )
        assert server.received == [], "nothing was sent"
        assert await gw.engine.queue.depth() == 1, "the message still waits, nothing lost"


async def test_provider_url_allowed_when_written_is_refused_at_connect(
    nc: Client,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
    sim: Sim,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The simulator (on loopback) was allowed when the site was written; the gateway's list
    is narrower: the send child refuses to connect, the account is held with the reason and
    the provider never sees the message."""
    account = await sim.account()
    site = await make_site(nc, sim, account)
    monkeypatch.setenv("STAGGER_OUTBOUND_ALLOW", "")
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        assert gw.gateway.send_process is not None, "the send child makes the call"
        ids = await submit(nc, site["site"], 1)
        await wait_queued(gw, 1)
        await publish_tick(nc, one_tick(site["account"], [site["site"]], budget=5))

        (event,) = await wait_until(
            lambda: provider_events(nc, "stagger.credits.sending_held"),
            timeout=30,
            message="the account held",
        )
        assert "loopback" in event.data.reason and "STAGGER_OUTBOUND_ALLOW" in event.data.reason
        assert await sim.submissions(account) == [], "the provider never saw it"
        assert ids[0] not in await terminal(nc)
        assert await gw.engine.queue.depth() == 1
        # The provider test (lookups and balances run in the replica) says the same.
        answer = await gw.gateway.provider_test.handle(
            {"site_id": site["site"], "group_id": site["group"]}
        )
        assert answer["ok"] is False and "loopback" in answer["error"]


# --- what users see of a remote error -----------------------------------------------------------

BANNER = "internal-db-7.corp.example: ORA-00942 at /srv/app/stack.py line 12 <script>x</script>"


@contextlib.asynccontextmanager
async def talkative_provider() -> AsyncIterator[str]:
    """An HTTP server answering every call with an error whose body tells too much."""

    async def answer(request: Request) -> PlainTextResponse | JSONResponse:
        if request.url.path.endswith("/balance"):
            return PlainTextResponse(BANNER, status_code=500)
        return JSONResponse({"error": BANNER, "detail": BANNER}, status_code=400)

    app = Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "POST"])])
    port = free_port()
    async with serve_http(app, "127.0.0.1", port):
        yield f"http://127.0.0.1:{port}"


async def test_provider_errors_show_status_and_short_reason_only(
    nc: Client,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
    sim: Sim,  # noqa: F811
) -> None:
    """A provider whose error bodies carry internal details: the provider test, the
    ProviderTested event and the failed message say the HTTP status and a fixed reason."""
    account = await sim.account()
    async with talkative_provider() as url:
        site = await make_site(nc, Sim(url), account)
        async with gateway_running(nats_url, database_url, tmp_path) as gw:
            await gw.engine.sites.wait_for(site["site"])
            answer = await gw.gateway.provider_test.handle(
                {"site_id": site["site"], "group_id": site["group"]}
            )
            assert answer["ok"] is False
            assert answer["error"] == "the simulator answered HTTP 500 (the provider had an error)"
            ids = await submit(nc, site["site"], 1)
            await wait_queued(gw, 1)
            await publish_tick(nc, one_tick(site["account"], [site["site"]], budget=5))

            async def ended() -> bool:
                return ids[0] in await terminal(nc)

            await wait_until(ended, timeout=30, message="the message failed")
    (end,) = (await terminal(nc))[ids[0]]
    assert end.type == "stagger.dispatch.failed"
    assert end.data.reason == "the simulator answered HTTP 400 (the request was refused)"
    tested = [e for e in await events(nc, PROVIDERS) if e.type == "stagger.provider.tested"]
    assert tested and tested[-1].data.error == answer["error"]
    seen = [e.data.model_dump_json() for e in await events(nc, PROVIDERS)]
    seen += [e.data.model_dump_json() for e in await events(nc, "DISPATCH")]
    assert not any("internal-db-7" in text or "ORA-00942" in text for text in seen)


async def test_smtp_refusal_shows_codes_never_the_server_text(
    email: EmailHarness,  # noqa: F811
    smtp_servers: Any,  # noqa: F811
) -> None:
    def script(stage: str, envelope: Any, data: bytes | None) -> str | None:
        if stage == "rcpt":
            return "550 5.7.30 relay-7.corp.example says: mailbox db at 10.9.9.9 refused you"
        return None

    server = smtp_servers(script=script)
    site = await email.make_site(email_settings(server.port))
    async with email.gateway() as gw:
        ids = await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await email.tick(site, 10, manual=True)

        async def ended() -> bool:
            return ids[0] in {
                e.data.message_id
                for e in await email.events("DISPATCH")
                if e.type == "stagger.dispatch.failed"
            }  # type: ignore[attr-defined]

        await wait_until(ended, timeout=30, message="the message failed")
    (end,) = [e for e in await email.events("DISPATCH") if e.type == "stagger.dispatch.failed"]
    assert "550 5.7.30" in end.data.reason
    assert "relay-7" not in end.data.reason and "10.9.9.9" not in end.data.reason
    assert "relay-7" not in (end.data.provider_response or "")
