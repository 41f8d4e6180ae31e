"""The Microsoft Graph transport (issue 19) against a local stand-in of Graph's mail API:
sendMail with MIME through throttling (429 Retry-After), a 503, and a send accepted but
answered too late, reconciled through Sent Items by Message-ID; nothing sent twice."""

from __future__ import annotations

from typing import Any

from tests.integration.email_gateway.conftest import (
    EmailHarness,
    drive,
    email_settings,
    ended,
    queued,
)
from tests.integration.email_gateway.test_oauth_smtp import MAILBOX, raw_events, sign_in_for
from tests.support.graph_double import GraphState, graph_double  # noqa: F401  (fixture)
from tests.support.oauth_server import AuthServer
from tests.support.waiting import wait_until


def graph_settings(graph: GraphState, sign_in: dict[str, Any]) -> dict[str, Any]:
    return {
        # SMTP host stays as the preset fills it; the Graph transport does not connect to it.
        **email_settings(25, host="smtp.office365.com", address=MAILBOX),
        "transport": "graph",
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
