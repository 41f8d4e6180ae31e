"""OAuth 2.0 sign-in over IMAP (issue 19): dovecot validates the XOAUTH2 tokens against the test
authorization server's introspection endpoint. Replies and bounces arrive as with a password;
a revoked client stops the polling with the server's reason until the settings are corrected,
and then every message arrives once."""

from __future__ import annotations

from typing import Any

from shared.privacy.codec import PersonalData
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    drive,
    email_settings,
    ended,
    queued,
    ticks_done,
)
from tests.integration.email_gateway.test_oauth_smtp import MAILBOX, sign_in_for
from tests.integration.email_gateway.test_receiving import bounce, inbound, reply
from tests.support.oauth_imap import OAuthDovecot
from tests.support.oauth_server import AuthServer
from tests.support.waiting import wait_until


def settings(smtp_port: int, imap: OAuthDovecot, sign_in: dict[str, Any]) -> dict[str, Any]:
    return {
        **email_settings(smtp_port, address=MAILBOX),
        "sign_in": sign_in,
        "imap": {
            "enabled": True,
            "host": imap.host,
            "port": imap.port,
            "security": "none",
            "mailbox": "INBOX",
            "sent_folder": "Sent Items",
        },
    }


async def _inbound_count(email: EmailHarness, n: int) -> bool:
    return len(await inbound(email)) >= n


async def test_replies_and_bounces_arrive_over_oauth(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any, oauth_dovecot: OAuthDovecot
) -> None:
    server, _ = oauth_smtp()
    oauth_dovecot.add_user(MAILBOX)
    sign_in, _ = sign_in_for(auth_server, "refresh_token")
    site = await email.make_site(settings(server.port, oauth_dovecot, sign_in))
    async with email.gateway() as gw:
        ids = await email.submit(site, 2)
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        await email.tick(site, 10)
        await wait_until(lambda: ended(email, 2), timeout=30, message="sent")
        first, second = (f"<{i}@smile.example>" for i in ids)
        oauth_dovecot.append(MAILBOX, "INBOX", reply(first))
        oauth_dovecot.append(MAILBOX, "INBOX", bounce(second, "patient1@example.org"))
        await drive(email, site, lambda: _inbound_count(email, 2), receive=True, message="received")
        status = await email.rpc("account_status", {"site_id": site})
    # Sealed on arrival (docs/privacy.md): opened under the senders' keys.
    personal = PersonalData(email.nc, email.box)
    received = {
        await personal.open(e.data.group_id, e.data.subject): e.data for e in await inbound(email)
    }
    assert received["Re: Recall 0"].matched_message_id == ids[0]
    assert received["Undelivered Mail Returned to Sender"].kind == "bounce"
    assert received["Undelivered Mail Returned to Sender"].matched_message_id == ids[1]
    assert status["imap"]["ok"] is True
    assert "method=XOAUTH2" in oauth_dovecot.log()
    # SMTP and IMAP share the account's token chain: every refresh rotated cleanly.
    assert auth_server.refused["refresh_token"] == 0


async def test_revoked_client_stops_polling_until_corrected(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any, oauth_dovecot: OAuthDovecot
) -> None:
    server, _ = oauth_smtp()
    oauth_dovecot.add_user(MAILBOX)
    sign_in, _ = sign_in_for(auth_server, "microsoft_secret")
    site = await email.make_site(settings(server.port, oauth_dovecot, sign_in))
    async with email.gateway():
        oauth_dovecot.append(MAILBOX, "INBOX", reply("<none@smile.example>"))
        await drive(email, site, lambda: _inbound_count(email, 1), receive=True, message="first")
        auth_server.revoke(next(iter(auth_server.clients.values())))
        oauth_dovecot.append(MAILBOX, "INBOX", reply("<other@smile.example>", "b@example.org"))

        async def refused() -> bool:
            status = await email.rpc("account_status", {"site_id": site})
            imap = status.get("imap") or {}
            return imap.get("ok") is False and "AADSTS7000112" in (imap.get("last_error") or "")

        await drive(email, site, refused, receive=True, message="the reason is shown")
        assert len(await inbound(email)) == 1, "nothing read while the sign-in is refused"
        polls = auth_server.refused["client_credentials"]
        for _ in range(3):
            await email.tick(site, 10, receive=True)
        await wait_until(lambda: ticks_done(email), timeout=30, message="polls done")
        assert auth_server.refused["client_credentials"] == polls, "held: no new attempts"
        fixed, _ = sign_in_for(auth_server, "microsoft_secret")
        await email.change_site(
            site,
            {
                "email.sign_in.client_id": fixed["client_id"],
                "email.sign_in.client_secret": fixed["client_secret"],
            },
        )
        await drive(email, site, lambda: _inbound_count(email, 2), receive=True, message="again")
        status = await email.rpc("account_status", {"site_id": site})
    assert len(await inbound(email)) == 2, "each message recorded once"
    assert status["imap"]["ok"] is True


async def test_short_lived_tokens_across_many_polls(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any, oauth_dovecot: OAuthDovecot
) -> None:
    auth_server.lifetime = 5
    server, _ = oauth_smtp()
    oauth_dovecot.add_user(MAILBOX)
    with oauth_dovecot.client(MAILBOX) as conn:
        for i in range(200):
            message = reply(f"<none-{i}@smile.example>", f"p{i}@example.org")
            typ, detail = conn.append("INBOX", None, None, message)
            assert typ == "OK", detail
    sign_in, _ = sign_in_for(auth_server, "refresh_token")
    site = await email.make_site(settings(server.port, oauth_dovecot, sign_in))
    # Ten messages a poll, each poll a new IMAP session signing in: 20 sign-ins spread over
    # several token lifetimes, each with a token that still has time left.
    async with email.gateway(inbound_batch=10):
        await drive(
            email,
            site,
            lambda: _inbound_count(email, 200),
            receive=True,
            period=0.3,
            timeout=120,
            message="200 received",
        )
    assert len(await inbound(email)) == 200
    assert auth_server.refused["refresh_token"] == 0
    assert auth_server.grants["refresh_token"] >= 2, auth_server.grants
    log = (oauth_dovecot.root / "dovecot.log").read_text(errors="replace")
    assert log.count("method=XOAUTH2") >= 20, "every poll signed in anew"
    assert "auth failed" not in log, "a token was refused"
