"""OAuth 2.0 sign-in over SMTP (issue 19), against a real authorization server on localhost and
aiosmtpd accepting only XOAUTH2/OAUTHBEARER tokens that verify against the server's JWKS:
every sign-in method sends end to end; 5-second tokens are refreshed before they expire across
a 200-message batch; a revoked client holds the account with the server's reason and resumes,
nothing sent twice, once the settings are corrected."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa

from services.email_gateway.adapters.oauth_tokens import refresh_tokens
from shared.events.codec import encode
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    drive,
    email_settings,
    ended,
    queued,
)
from tests.support.oauth_server import AuthServer, certificate_pem
from tests.support.waiting import wait_until

MAILBOX = "front@smile.example"


def sign_in_for(server: AuthServer, method: str) -> tuple[dict[str, Any], list[str]]:
    """Settings for one sign-in method, registered with the server; and its plaintext
    secrets (which must never appear in an event)."""
    if method == "microsoft_secret":
        client = server.add_client(MAILBOX, secret="s3cret-value-for-app")
        return {
            "method": "microsoft_365",
            "tenant_id": "contoso.test",
            "client_id": client.client_id,
            "client_secret": "s3cret-value-for-app",
            "token_url": server.token_url(),
        }, ["s3cret-value-for-app"]
    if method == "microsoft_certificate":
        pem, _x5t = certificate_pem()
        client = server.add_client(MAILBOX, certificate=pem)
        return {
            "method": "microsoft_365",
            "tenant_id": "contoso.test",
            "client_id": client.client_id,
            "certificate": pem,
            "token_url": server.token_url(),
        }, [pem.split("-----BEGIN PRIVATE KEY-----")[1].split()[0]]
    if method == "google_workspace":
        _client, key = server.add_service_account(MAILBOX)
        return {
            "method": "google_workspace",
            "service_account_key": json.dumps(key),
        }, [key["private_key"].splitlines()[1]]
    client, token = server.add_refresh_client(MAILBOX, secret="refresh-client-secret")
    return {
        "method": "refresh_token",
        "client_id": client.client_id,
        "client_secret": "refresh-client-secret",
        "refresh_token": token,
        "token_url": f"{server.url}/token",
    }, [token, "refresh-client-secret"]


def oauth_settings(port: int, sign_in: dict[str, Any]) -> dict[str, Any]:
    return {**email_settings(port, address=MAILBOX), "sign_in": sign_in}


async def raw_events(email: EmailHarness, streams: tuple[str, ...]) -> str:
    """Every event of the streams as stored (encoded), for a search for secrets."""
    found = []
    for stream in streams:
        for event in await email.events(stream):
            found.append(encode(event)[1].decode(errors="replace"))
    assert found, "no events to search"
    return "\n".join(found)


@pytest.mark.parametrize(
    "method", ["microsoft_secret", "microsoft_certificate", "google_workspace", "refresh_token"]
)
async def test_each_sign_in_method_sends(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any, method: str
) -> None:
    server, verifier = oauth_smtp()
    sign_in, secrets = sign_in_for(auth_server, method)
    site = await email.make_site(oauth_settings(server.port, sign_in))
    async with email.gateway() as gw:
        await email.submit(site, 3)
        await wait_until(lambda: queued(gw, 3), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(
            lambda: ended(email, 3),
            timeout=30,
            message="all sent",
            describe=lambda: f"{auth_server.grants} {auth_server.refused} {verifier.refused}",
        )
        status = await email.rpc("account_status", {"site_id": site})
    assert len(server.received) == 3
    assert verifier.accepted >= 1 and verifier.refused == []
    assert status["ok"] is True
    assert sum((await email.terminal()).values()) == 3
    raw = await raw_events(email, ("SETTINGS", "DISPATCH", "PROVIDERS"))
    for secret in secrets:
        assert secret not in raw, "a secret reached an event in clear"


async def test_short_lived_tokens_refreshed_across_a_batch(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any
) -> None:
    auth_server.lifetime = 5
    server, verifier = oauth_smtp()
    sign_in, _ = sign_in_for(auth_server, "refresh_token")
    site = await email.make_site(oauth_settings(server.port, sign_in))
    # Connections are not kept between sends, so every message signs in again, across
    # several token lifetimes; the rotated refresh token is used each time.
    async with email.gateway(smtp_idle_seconds=0.01) as gw:
        ids = await email.submit(site, 200)
        await wait_until(lambda: queued(gw, 200), timeout=60, message="queued")
        await email.tick(site, 1000, spacing=0.06)
        await wait_until(lambda: ended(email, 200), timeout=120, message="batch sent")
    assert sorted(server.message_ids()) == sorted(f"<{i}@smile.example>" for i in ids)
    assert max(server.message_ids().values()) == 1
    assert verifier.refused == [], "an expired token was presented"
    assert auth_server.grants["refresh_token"] >= 3, auth_server.grants
    assert auth_server.refused["refresh_token"] == 0
    states = await email.terminal()
    assert len(states) == 200


async def test_revoked_client_holds_then_resumes_without_duplicates(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any
) -> None:
    server, verifier = oauth_smtp()
    sign_in, _ = sign_in_for(auth_server, "microsoft_secret")
    site = await email.make_site(oauth_settings(server.port, sign_in))
    # Revocation takes effect at the next sign-in: no connection is kept between sends.
    async with email.gateway(smtp_idle_seconds=0.01) as gw:
        first = await email.submit(site, 3)
        await wait_until(lambda: queued(gw, 3), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 3), timeout=30, message="first sent")
        client = next(iter(auth_server.clients.values()))
        auth_server.revoke(client)
        second = await email.submit(site, 4)
        await wait_until(lambda: queued(gw, 4), timeout=20, message="queued again")
        adapter = gw.adapter
        assert adapter is not None
        account = adapter.account_for(gw.engine.sites.get(site))  # type: ignore[arg-type]
        assert account is not None

        async def held() -> bool:
            return await gw.engine.limits.held(account) is not None

        await drive(email, site, held, message="the account is held")
        reason = await gw.engine.limits.held(account)
        assert reason is not None and "AADSTS7000112" in reason, reason
        status = await email.rpc("account_status", {"site_id": site})
        assert status["ok"] is False and "AADSTS7000112" in status["last_error"]
        assert await gw.engine.queue.depth() == 4, "nothing lost or failed while held"
        assert len(server.received) == 3
        # The admin registers a new secret for a fresh app and corrects the settings.
        fixed, _ = sign_in_for(auth_server, "microsoft_secret")
        await email.change_site(
            site,
            {
                "email.sign_in.client_id": fixed["client_id"],
                "email.sign_in.client_secret": fixed["client_secret"],
            },
        )
        await drive(email, site, lambda: ended(email, 7), timeout=60, message="resumed")
        assert await gw.engine.limits.held(account) is None
    counts = server.message_ids()
    assert sorted(counts) == sorted(f"<{i}@smile.example>" for i in first + second)
    assert max(counts.values()) == 1, "a message was sent twice"
    assert "token is not active" in verifier.refused


async def test_rotated_refresh_token_survives_a_restart(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any
) -> None:
    server, _ = oauth_smtp()
    sign_in, secrets = sign_in_for(auth_server, "refresh_token")
    site = await email.make_site(oauth_settings(server.port, sign_in))
    async with email.gateway() as gw:
        await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 1), timeout=30, message="first sent")
    # The configured token was used once and rotated: it is dead now; only the sealed copy of
    # the new one in the gateway's database lets a restarted gateway sign in.
    assert auth_server.grants["refresh_token"] == 1
    assert secrets[0] not in auth_server.refresh_tokens
    async with email.gateway(instance="gw-2") as gw:
        await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued again")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 2), timeout=30, message="sent after restart")
        async with gw.engine.queue.db() as session:
            stored = (await session.execute(sa.select(refresh_tokens.c.sealed))).scalars().all()
    assert auth_server.refused["refresh_token"] == 0
    assert len(server.received) == 2
    assert stored and all(s.startswith("enc:") for s in stored), "kept sealed"
    assert not any(t in s for s in stored for t in auth_server.refresh_tokens)
