"""Account identity includes the group: two groups typing the same provider account or SMTP
login never share a rate limiter, a daily cap, a hold or a connection — through the real
gateways (the simulator over HTTP, the aiosmtpd sink), not just the hash."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from nats.aio.client import Client

from shared.domain.accounts import email_account_id, sms_account_id
from shared.domain.site_settings import EmailSettings, SmsProvider
from tests.integration.email_gateway.conftest import (
    EmailHarness,
    email,  # noqa: F401  (fixture)
    email_settings,
    ended,
    queued,
)
from tests.integration.sms_gateway.conftest import sim, sim_process  # noqa: F401  (fixtures)
from tests.integration.sms_gateway.harness import (
    Sim,
    SimAccount,
    gateway_running,
    make_site,
    one_tick,
    provider_events,
    publish_tick,
    submit,
    terminal,
    wait_queued,
    wait_terminal,
)
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)
from tests.support.waiting import wait_until


def test_the_same_login_in_two_groups_is_two_accounts() -> None:
    provider = SmsProvider(kind="twilio", account_id="AC123", base_url="https://api.twilio.com")
    assert sms_account_id(provider, "g-a") != sms_account_id(provider, "g-b")
    assert sms_account_id(provider, "g-a") == sms_account_id(provider, "g-a")
    mail = EmailSettings(address="front@smile.example", smtp={"host": "smtp.example.com"})  # type: ignore[arg-type]
    assert email_account_id(mail, "g-a") != email_account_id(mail, "g-b")


async def test_one_groups_hold_does_not_hold_another_group_typing_the_same_account(
    nc: Client,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
    sim: Sim,  # noqa: F811
) -> None:
    """Group A types B's simulator account name with a key of its own: the provider refuses
    A's key and A's account is held; B, on the real account, keeps sending."""
    account = await sim.account()
    site_a = await make_site(
        nc, sim, SimAccount(account.name, "not-the-key"), group=f"g-{uuid.uuid4().hex[:6]}"
    )
    site_b = await make_site(nc, sim, account, group=f"g-{uuid.uuid4().hex[:6]}")
    assert site_a["account"] != site_b["account"]
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        await submit(nc, site_a["site"], 1, prefix="a")
        await wait_queued(gw, 1)
        await publish_tick(nc, one_tick(site_a["account"], [site_a["site"]], budget=5))

        (hold,) = await wait_until(
            lambda: provider_events(nc, "stagger.credits.sending_held"),
            timeout=30,
            message="A's account held",
        )
        assert hold.data.account == site_a["account"]
        assert "credentials" in hold.data.reason

        ids_b = await submit(nc, site_b["site"], 2, prefix="b")
        await wait_queued(gw, 3)
        await publish_tick(nc, one_tick(site_b["account"], [site_b["site"]], budget=5))
        await wait_terminal(nc, ids_b, timeout=30)
    ends = await terminal(nc)
    assert {ends[i][0].type for i in ids_b} == {"stagger.dispatch.sent"}
    assert len(await sim.stored(account)) == 2, "only B's messages reached the account"
    holds = await provider_events(nc, "stagger.credits.sending_held")
    assert [e.data.account for e in holds] == [site_a["account"]]


async def test_two_groups_with_one_smtp_login_keep_their_own_cap_and_connections(
    email: EmailHarness,  # noqa: F811
    smtp_servers: Any,  # noqa: F811
) -> None:
    """The same SMTP server and login typed by two groups, each with a daily cap of one:
    A's send does not use up B's cap, and B's mail never rides A's open connection."""
    server = smtp_servers()
    typed = email_settings(server.port, username="front@smile.example", daily_cap=1)
    site_a = await email.make_site(typed)
    site_b = await email.make_site(typed, group_id=f"g-{uuid.uuid4().hex[:8]}")
    async with email.gateway() as gw:
        await email.submit(site_a, 1, to=lambda i: "a@example.org")
        await wait_until(lambda: queued(gw, 1), timeout=20, message="A's queued")
        await email.tick(site_a, 10)
        await wait_until(lambda: ended(email, 1), timeout=30, message="A's sent")
        await email.submit(site_b, 1, to=lambda i: "b@example.org")
        await wait_until(lambda: queued(gw, 1), timeout=20, message="B's queued")
        await email.tick(site_b, 10)
        await wait_until(lambda: ended(email, 2), timeout=30, message="B's sent too")
        assert gw.pool.connections_opened == 2, "one connection per group's account"
    assert sorted(r.rcpt_tos[0] for r in server.received) == ["a@example.org", "b@example.org"]
