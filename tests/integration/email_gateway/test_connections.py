"""SMTP connections: STARTTLS, implicit TLS, plain; AUTH; clear errors for a refused login and
a TLS failure, shown on the settings page (status RPC, provider events), with nothing lost."""

from __future__ import annotations

from pathlib import Path

from tests.integration.email_gateway.conftest import (
    EmailHarness,
    drive,
    email_settings,
    ended,
    queued,
    terminal_of,
)
from tests.support.smtp import make_tls_files
from tests.support.waiting import wait_until


async def test_starttls_and_implicit_tls_with_login(
    email: EmailHarness, smtp_servers, tmp_path: Path
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    secure = {"tls_cert": tls.cert, "tls_key": tls.key, "username": "front", "password": "s3cret"}
    starttls = smtp_servers(tls="starttls", **secure)
    implicit = smtp_servers(tls="tls", **secure)
    login = {"username": "front", "password": "s3cret"}
    site_a = await email.make_site(email_settings(starttls.port, security="starttls", **login))
    site_b = await email.make_site(email_settings(implicit.port, security="tls", **login))
    async with email.gateway(ca_file=tls.ca) as gw:
        await email.submit(site_a, 2)
        await email.submit(site_b, 2)
        await wait_until(lambda: queued(gw, 4), timeout=20, message="queued")
        await email.tick(site_a, 10)
        await email.tick(site_b, 10)
        await wait_until(lambda: ended(email, 4), timeout=30, message="all recorded")
        status = await email.rpc("account_status", {"site_id": site_a})
    assert len(starttls.received) == 2 and len(implicit.received) == 2
    assert status["ok"] is True and status["last_error"] is None and status["checked_at"]


async def test_refused_login_is_reported_and_nothing_is_lost(
    email: EmailHarness, smtp_servers
) -> None:
    server = smtp_servers(username="front", password="right")
    site = await email.make_site(email_settings(server.port, username="front", password="wrong"))
    async with email.gateway(max_attempts=50) as gw:
        ids = await email.submit(site, 3)
        await wait_until(lambda: queued(gw, 3), timeout=20, message="queued")
        await drive(email, site, lambda: _deferred_with(email, "535", 3), message="refusals")
        assert server.received == []
        status = await email.rpc("account_status", {"site_id": site})
        assert status["ok"] is False
        assert "SMTP login refused" in status["last_error"] and "535" in status["last_error"]
        health = [e for e in await email.events("PROVIDERS")]
        assert health and health[-1].type == "stagger.provider.email_account_status"
        assert health[-1].data.ok is False and health[-1].data.stage == "login"
        assert health[-1].data.code == 535
        assert (await gw.engine.queue.depth()) == 3, "every message still waits"
        # The practice fixes the password: the same messages go, once each.
        await email.change_site(site, {"email": {"smtp": {"password": "right"}}})
        await wait_until(lambda: _password_seen(gw, site), timeout=20, message="settings seen")
        await drive(email, site, lambda: ended(email, 3), message="all sent")
        status = await email.rpc("account_status", {"site_id": site})
    assert status["ok"] is True and status["last_error"] is None
    assert sorted(server.message_ids().values()) == [1, 1, 1]
    ends = terminal_of(await email.events("DISPATCH"))
    assert {ends[i].type for i in ids} == {"stagger.dispatch.sent"}
    health = [e.data for e in await email.events("PROVIDERS")]
    assert [h.ok for h in health] == [False, True], "one event per change, not per attempt"


async def test_refused_login_ends_failed_after_bounded_attempts(
    email: EmailHarness, smtp_servers
) -> None:
    server = smtp_servers(username="front", password="right")
    site = await email.make_site(email_settings(server.port, username="front", password="wrong"))
    async with email.gateway(max_attempts=3) as gw:
        ids = await email.submit(site, 1)
        await wait_until(lambda: queued(gw, 1), timeout=20, message="queued")
        await drive(email, site, lambda: ended(email, 1), message="given up")
    end = terminal_of(await email.events("DISPATCH"))[ids[0]]
    assert end.type == "stagger.dispatch.failed"
    assert end.data.attempts == 3
    assert "gave up after 3 attempts" in end.data.reason
    # The reply code and enhanced status code, never the server's own words.
    assert "535 5.7.8" in end.data.reason and "Authentication failed" not in end.data.reason


async def test_tls_failure_is_a_clear_error(
    email: EmailHarness, smtp_servers, tmp_path: Path
) -> None:
    tls = make_tls_files(tmp_path / "tls")
    server = smtp_servers(tls="starttls", tls_cert=tls.cert, tls_key=tls.key)
    site = await email.make_site(email_settings(server.port, security="starttls"))
    plain = await email.make_site(email_settings(server.port, security="none"))
    # The gateway does not trust the server's self-signed certificate (no CA file).
    async with email.gateway(max_attempts=2) as gw:
        ids = await email.submit(site, 1)
        await email.submit(plain, 1)
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        await drive(email, site, lambda: ended(email, 1), message="given up")
        status = await email.rpc("account_status", {"site_id": site})
        # A plain session to a server that requires STARTTLS is refused, never downgraded.
        await email.tick(plain, 10)
        await wait_until(lambda: _deferred_with(email, "530", 1), timeout=20, message="refused")
    assert server.received == []
    end = terminal_of(await email.events("DISPATCH"))[ids[0]]
    assert end.type == "stagger.dispatch.failed"
    assert "TLS failure" in end.data.reason and "certificate verify failed" in end.data.reason
    assert status["ok"] is False and status["stage"] == "tls"
    assert "certificate verify failed" in status["last_error"]


async def _deferred_with(email: EmailHarness, text: str, n: int) -> bool:
    events = await email.events("DISPATCH")
    return (
        sum(1 for e in events if e.type == "stagger.dispatch.deferred" and text in e.data.reason)
        >= n
    )


async def _password_seen(gw, site_id: str) -> bool:  # type: ignore[no-untyped-def]
    site = gw.engine.sites.get(site_id)
    return site is not None and gw.adapter.box.open(site.settings.email.smtp.password) == "right"
