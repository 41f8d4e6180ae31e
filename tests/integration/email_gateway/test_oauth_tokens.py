"""Token providers against the real local authorization server (issue 19): two replicas share
one rotating refresh-token chain through the store; a replica holding a token another already
rotated reloads the newest instead of holding the account; a refused client is `TokenRefused`,
an unreachable endpoint `TokenUnavailable`."""

from __future__ import annotations

import pytest

from shared.email_auth.credentials import OAuthCredentials
from shared.email_auth.provider import TokenProvider, TokenRefused, TokenUnavailable
from shared.runtime.nats_server import free_port
from tests.support.oauth_server import AuthServer

MAILBOX = "front@smile.example"


async def test_replicas_share_a_rotating_chain(auth_server: AuthServer) -> None:
    client, first = auth_server.add_refresh_client(MAILBOX)
    creds = OAuthCredentials(
        account="email-a",
        method="refresh_token",
        token_url=f"{auth_server.url}/token",
        scope="https://mail.google.com/",
        user=MAILBOX,
        client_id=client.client_id,
        refresh_token=first,
    )
    store: dict[str, str] = {}

    async def save(c: OAuthCredentials, token: str) -> None:
        store[c.fingerprint] = token

    async def load(c: OAuthCredentials) -> str | None:
        return store.get(c.fingerprint)

    one = TokenProvider(save_rotated=save, load_rotated=load)
    two = TokenProvider(save_rotated=save, load_rotated=load)
    await one.token(creds)  # first → r1 (saved)
    await two.token(creds)  # loads r1 → r2 (saved)
    await one.token(creds, fresh=True)  # holds r1, already used: reloads r2 → r3
    await two.token(creds, fresh=True)  # holds r2, used: reloads r3 → r4
    assert auth_server.grants["refresh_token"] == 4
    assert auth_server.refused["refresh_token"] == 2, "each stale token refused once"
    assert list(store.values()) == [next(iter(auth_server.refresh_tokens))]


async def test_refusal_and_unavailability_are_told_apart(auth_server: AuthServer) -> None:
    client = auth_server.add_client(MAILBOX, secret="right")
    creds = OAuthCredentials(
        account="email-b",
        method="microsoft_365",
        token_url=auth_server.token_url(),
        scope="https://outlook.office365.com/.default",
        user=MAILBOX,
        client_id=client.client_id,
        client_secret="wrong",
    )
    with pytest.raises(TokenRefused, match="AADSTS7000215"):
        await TokenProvider().token(creds)
    nowhere = OAuthCredentials(
        account="email-c",
        method="microsoft_365",
        token_url=f"http://127.0.0.1:{free_port()}/t/oauth2/v2.0/token",
        scope="s",
        user=MAILBOX,
        client_id="c",
        client_secret="s",
    )
    with pytest.raises(TokenUnavailable):
        await TokenProvider(timeout=5).token(nowhere)
