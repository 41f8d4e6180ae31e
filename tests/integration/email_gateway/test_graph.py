"""The Microsoft Graph transport (issue 19) against a local stand-in of Graph's mail API:
sendMail with MIME through throttling (429 Retry-After), a 503, and a send accepted but
answered too late, reconciled through Sent Items by Message-ID; nothing sent twice."""

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
from tests.integration.email_gateway.test_oauth_smtp import MAILBOX, raw_events, sign_in_for
from tests.integration.email_gateway.test_receiving import bounce, inbound, reply
from tests.support.graph_double import GraphState, graph_double  # noqa: F401  (fixture)
from tests.support.oauth_server import AuthServer
from tests.support.waiting import wait_until


def graph_settings(graph: GraphState, sign_in: dict[str, Any]) -> dict[str, Any]:
    return {
        # SMTP host stays as the preset fills it; the Graph transport does not connect to it.
        **email_settings(25, host="smtp.office365.com", address=MAILBOX),
        "transport": "graph",
        "imap": {"enabled": True},  # receiving on; Graph reads the inbox
        "sign_in": {**sign_in, "graph_url": graph.url},
    }


async def test_graph_sends_through_faults_and_reconciles_without_duplicates(
    email: EmailHarness,
    auth_server: AuthServer,
    graph_double: GraphState,  # noqa: F811
) -> None:
    graph_double.faults = ["429", "503", "accept_then_timeout"]
    graph_double.hang_seconds = 4.0
    sign_in, secrets = sign_in_for(auth_server, "microsoft_secret")
    site = await email.make_site(graph_settings(graph_double, sign_in))
    async with email.gateway(smtp_timeout_seconds=1.5) as gw:
        ids = await email.submit(site, 5)
        await wait_until(lambda: queued(gw, 5), timeout=20, message="queued")
        await drive(email, site, lambda: ended(email, 5), timeout=60, message="all sent")
    counts = graph_double.message_ids(MAILBOX)
    assert sorted(counts) == sorted(f"<{i}@smile.example>" for i in ids)
    assert max(counts.values()) == 1, "a message was sent twice"
    assert graph_double.calls["429"] == 1 and graph_double.calls["503"] == 1
    assert graph_double.calls["accept_then_timeout"] == 1
    assert graph_double.calls["search"] >= 1, "the uncertain send was looked up in Sent Items"
    terminal = await email.terminal()
    assert len(terminal) == 5 and max(terminal.values()) == 1
    sent = [e for e in await email.events("DISPATCH") if e.type == "stagger.dispatch.sent"]
    assert len(sent) == 5
    raw = await raw_events(email, ("SETTINGS", "DISPATCH"))
    assert secrets[0] not in raw


async def test_graph_revoked_consent_holds_then_resumes(
    email: EmailHarness,
    auth_server: AuthServer,
    graph_double: GraphState,  # noqa: F811
) -> None:
    sign_in, _ = sign_in_for(auth_server, "microsoft_secret")
    site = await email.make_site(graph_settings(graph_double, sign_in))
    auth_server.revoke(next(iter(auth_server.clients.values())))
    async with email.gateway() as gw:
        ids = await email.submit(site, 2)
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        adapter = gw.adapter
        assert adapter is not None
        account = adapter.account_for(gw.engine.sites.get(site))  # type: ignore[arg-type]
        assert account is not None

        async def held() -> bool:
            return await gw.engine.limits.held(account) is not None

        await drive(email, site, held, message="held")
        assert "AADSTS7000112" in (await gw.engine.limits.held(account) or "")
        fixed, _ = sign_in_for(auth_server, "microsoft_secret")
        await email.change_site(
            site,
            {
                "email.sign_in.client_id": fixed["client_id"],
                "email.sign_in.client_secret": fixed["client_secret"],
            },
        )
        await drive(email, site, lambda: ended(email, 2), timeout=60, message="resumed")
    counts = graph_double.message_ids(MAILBOX)
    assert sorted(counts) == sorted(f"<{i}@smile.example>" for i in ids)
    assert max(counts.values()) == 1


async def test_graph_delta_receives_replies_and_bounces_once(
    email: EmailHarness,
    auth_server: AuthServer,
    graph_double: GraphState,  # noqa: F811
) -> None:
    sign_in, _ = sign_in_for(auth_server, "microsoft_certificate")
    site = await email.make_site(graph_settings(graph_double, sign_in))
    async with email.gateway() as gw:
        ids = await email.submit(site, 2)
        await wait_until(lambda: queued(gw, 2), timeout=20, message="queued")
        await drive(email, site, lambda: ended(email, 2), message="sent")
        first, second = (f"<{i}@smile.example>" for i in ids)
        graph_double.deliver(MAILBOX, reply(first))
        graph_double.deliver(MAILBOX, bounce(second, "patient1@example.org"))
        stranger = reply("<unknown@elsewhere.example>", "x@example.net")
        graph_double.deliver(MAILBOX, stranger.replace(b"Re: Recall 0", b"Hello"))

        async def count(n: int) -> bool:
            return len(await inbound(email)) >= n

        await drive(email, site, lambda: count(3), receive=True, message="three received")
        later = reply(first, "patient0@example.org").replace(b"Re: Recall 0", b"Re: again")
        graph_double.deliver(MAILBOX, later)
        await drive(email, site, lambda: count(4), receive=True, message="the fourth")
        for _ in range(3):
            await email.tick(site, 10, receive=True)
        await wait_until(lambda: ticks_done(email), timeout=30, message="polls done")
        status = await email.rpc("account_status", {"site_id": site})
    received = await inbound(email)
    assert len(received) == 4, [e.data.subject for e in received]
    # Sealed on arrival (docs/privacy.md): opened under the senders' keys.
    personal = PersonalData(email.nc, email.box)
    by_subject = {await personal.open(e.data.group_id, e.data.subject): e.data for e in received}
    assert by_subject["Re: Recall 0"].matched_message_id == ids[0]
    assert by_subject["Re: again"].matched_message_id == ids[0]
    assert by_subject["Hello"].matched_message_id is None
    dsn = by_subject["Undelivered Mail Returned to Sender"]
    assert dsn.kind == "bounce" and dsn.matched_message_id == ids[1]
    undelivered = [
        e for e in await email.events("DISPATCH") if e.type == "stagger.dispatch.undelivered"
    ]
    assert [e.data.message_id for e in undelivered] == [ids[1]]
    # One full delta round (paged), then only the delta link: nothing read twice.
    assert graph_double.calls["delta-initial"] == 2, graph_double.calls
    assert graph_double.calls["value"] == 4
    assert status["ok"] is True
