"""The email Test (issue 19) through the request the API, the CLI and the wizard make: sign in
to SMTP and to a real dovecot over OAuth, open the inbox and the Sent folder, send nothing;
a wrong secret shows the authorization server's reason."""

from __future__ import annotations

from typing import Any

from services.config.email_test import request_email_test
from tests.integration.email_gateway.conftest import EmailHarness
from tests.integration.email_gateway.test_oauth_imap import settings
from tests.integration.email_gateway.test_oauth_smtp import MAILBOX, sign_in_for
from tests.support.oauth_imap import OAuthDovecot
from tests.support.oauth_server import AuthServer
from tests.support.waiting import wait_until


async def _known(gw: Any, site: str) -> bool:
    return gw.engine.sites.get(site) is not None


async def test_email_test_signs_in_and_opens_inbox_and_sent(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any, oauth_dovecot: OAuthDovecot
) -> None:
    server, verifier = oauth_smtp()
    oauth_dovecot.add_user(MAILBOX)
    oauth_dovecot.create(MAILBOX, "Sent Items")
    good, _ = sign_in_for(auth_server, "microsoft_secret")
    site = await email.make_site(settings(server.port, oauth_dovecot, good))
    wrong = {**good, "client_secret": "not-the-secret"}
    other = await email.make_site(settings(server.port, oauth_dovecot, wrong))
    async with email.gateway() as gw:
        await wait_until(lambda: _known(gw, other), timeout=20, message="sites loaded")
        passed = await request_email_test(email.nc, site)
        failed = await request_email_test(email.nc, other)
    assert passed["ok"] is True, passed
    assert passed["smtp"]["ok"] is True
    assert passed["imap"]["ok"] is True
    assert passed["imap"]["opened"] == ["INBOX", "Sent Items"]
    assert server.received == [], "the test sends nothing"
    assert verifier.accepted >= 1
    assert "method=XOAUTH2" in oauth_dovecot.log()

    assert failed["ok"] is False
    for half in ("smtp", "imap"):
        assert failed[half]["ok"] is False
        assert "AADSTS7000215" in failed[half]["detail"], failed[half]
    assert "AADSTS7000215" in failed["last_error"]
    assert "not-the-secret" not in str(failed)


async def test_email_test_names_a_missing_sent_folder(
    email: EmailHarness, auth_server: AuthServer, oauth_smtp: Any, oauth_dovecot: OAuthDovecot
) -> None:
    server, _ = oauth_smtp()
    oauth_dovecot.add_user(MAILBOX)
    sign_in, _ = sign_in_for(auth_server, "google_workspace")
    site = await email.make_site(settings(server.port, oauth_dovecot, sign_in))
    async with email.gateway() as gw:
        await wait_until(lambda: _known(gw, site), timeout=20, message="site loaded")
        result = await request_email_test(email.nc, site)
    assert result["smtp"]["ok"] is True
    assert result["imap"]["ok"] is False and result["imap"]["opened"] == ["INBOX"]
    assert "'Sent Items'" in result["imap"]["detail"]
