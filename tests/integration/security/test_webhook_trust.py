"""Webhook trust: a provider webhook is believed only when the account it names signed it.

Against the real gateway HTTP app (real NATS, SQLite and PostgreSQL), the SMS provider
simulator over HTTP and a local double of Twilio's API:

- the simulator's public development secret does not sign for an account with its own secret;
- one simulator account's secret does not sign for another account;
- a Twilio webhook signed with a token no provider test succeeded with is refused (the
  copied-SID attack: another group types our Account SID with a token of its own choosing);
- without `STAGGER_SMS_SIMULATOR_ENABLED` the simulator's route is absent and its provider kind
  is refused;
- a body over 64 KiB is answered 413 before the rest of it is sent;
- refusals are counted by reason (`stagger_webhooks_refused_total`) and logged at a bounded rate.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.aio.client import Client
from prometheus_client.parser import text_string_to_metric_families

from services.sms_gateway.adapters import unrouted
from services.sms_gateway.service import SmsGatewayService
from shared.bus import subjects
from shared.bus.topology import INBOUND, OPTOUTS
from shared.secrets import generate_key
from shared.sms_signing import signature_headers
from shared.tokens import issue_token
from tests.integration.sms_gateway.harness import (
    Sim,
    SimAccount,
    at_least,
    events,
    gateway_running,
    handlers,
    midday_zone,
    number,
    opened_replies,
    opted_out,
    webhook_url,
)
from tests.integration.sms_provider_sim.harness import SimProcess, simulator_running
from tests.support.processes import service_env, start_service
from tests.support.twilio_double import (
    TwilioAccount,
    TwilioDouble,
    twilio_fixture,  # noqa: F401  (the `twilio` fixture)
    twilio_signature,
)
from tests.support.waiting import wait_until

CAP = 64 * 1024
ACCOUNT_HEADER = "X-Sim-Account"
DEV_WEBHOOK_SECRET = "sim-dev-webhook-secret"
"""The simulator's public development secret (its default account's, for `./dev up`)."""
METRIC = "stagger_webhooks_refused_total"
ANSWER_SECONDS = 15.0
"""How long a refusal may take to arrive; a server waiting for the rest of the body never
answers (the client never sends it)."""


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
async def sim_process(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[SimProcess]:
    async with simulator_running(
        tmp_path_factory.mktemp("trust-sim"), STAGGER_SIM_RECEIPT_DELAY_SECONDS="0.2"
    ) as process:
        yield process


@pytest.fixture
def sim(sim_process: SimProcess) -> Sim:
    return Sim(sim_process.url)


# --- helpers ---------------------------------------------------------------------------------


async def site_with(
    nc: Client, provider: dict[str, Any], sender: str, *, group: str | None = None
) -> dict[str, str]:
    """A site of a new (or the given) group with this SMS provider."""
    group = group or f"g-{secrets.token_hex(3)}"
    site = f"s-{secrets.token_hex(3)}"
    h = handlers(nc)
    if await h.store.group(group) is None:
        await h.create_group(group, group, {}, actor="test")
    await h.create_site(
        group,
        site,
        {"name": site, "timezone": midday_zone()},
        {"sms": {"provider": provider, "sender_id": sender, "mode": "staggered"}},
        actor="test",
    )
    return {"group": group, "site": site}


async def sim_site(
    nc: Client, sim: Sim, account: SimAccount, webhook_secret: str, sender: str
) -> dict[str, str]:
    provider = {
        "kind": "simulator",
        "account_id": account.name,
        "secret": account.api_key,
        "webhook_secret": webhook_secret,
        "base_url": sim.url,
    }
    return await site_with(nc, provider, sender)


async def known_to(gw: SmsGatewayService, *sites: dict[str, str]) -> None:
    """Until the gateway has read these sites' settings."""
    for site in sites:
        assert await gw.engine.sites.wait_for(site["site"], patience=30) is not None


def inbound(sender: str, to: str, text: str) -> bytes:
    """A simulator inbound-reply webhook body."""
    return json.dumps(
        {
            "type": "inbound",
            "id": f"sim-in-{secrets.token_hex(6)}",
            "from": sender,
            "to": to,
            "body": text,
            "received_at": datetime.now(UTC).isoformat(),
            "in_reply_to": None,
        }
    ).encode()


def sim_headers(account: str, secret: str, body: bytes) -> dict[str, str]:
    return {
        "Content-Type": "application/json",
        ACCOUNT_HEADER: account,
        **signature_headers(secret, body),
    }


async def refused(gw: SmsGatewayService) -> dict[str, float]:
    """reason → refusals so far, scraped from the gateway's /metrics."""
    async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
        text = (await http.get(f"{gw.webhook_base_url()}/metrics")).text
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == METRIC:
                counts[sample.labels["reason"]] = sample.value
    return counts


def grew(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}


def assert_counted(before: dict[str, float], after: dict[str, float], **wanted: int) -> None:
    """The counter grew by at least these refusals (the registry is the test process's: a
    late simulator retry of an earlier test may land on a reused port and add to it)."""
    growth = grew(before, after)
    assert all(growth.get(reason, 0) >= n for reason, n in wanted.items()), growth


# --- simulator secrets -----------------------------------------------------------------------


async def test_a_reply_signed_with_the_development_secret_is_refused_where_the_account_has_its_own(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    own = f"whsec-{secrets.token_hex(8)}"
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account = await sim.account(webhook=webhook_url(gw), webhook_secret=own)
        site = await sim_site(nc, sim, account, own, "+61491570101")
        await known_to(gw, site)
        before = await refused(gw)
        body = inbound(number(1), "+61491570101", "STOP")
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            forged = await http.post(
                webhook_url(gw),
                content=body,
                headers=sim_headers(account.name, DEV_WEBHOOK_SECRET, body),
            )
        assert forged.status_code == 401, forged.text
        assert_counted(before, await refused(gw), bad_signature=1)
        # The simulator itself signs with the account's secret: that reply is acted on.
        await sim.reply(account, number(2), "STOP", to="+61491570101")
        await wait_until(lambda: at_least(nc, OPTOUTS, 1), timeout=20, message="the opt-out")
    assert await opted_out(nc) == [number(2)]
    assert [r.from_number for r in await opened_replies(nc)] == [number(2)]


async def test_a_reply_signed_with_another_accounts_secret_is_refused(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    secret_a, secret_b = f"whsec-a-{secrets.token_hex(8)}", f"whsec-b-{secrets.token_hex(8)}"
    # Before per-account secrets a gateway serving two accounts listed both keys in one
    # deployment-wide setting, and either key then signed for either account. Today's gateway
    # ignores that setting.
    async with gateway_running(
        nats_url, database_url, tmp_path, simulator_webhook_secret=f"{secret_a},{secret_b}"
    ) as gw:
        a = await sim.account(webhook=webhook_url(gw), webhook_secret=secret_a)
        b = await sim.account(webhook=webhook_url(gw), webhook_secret=secret_b)
        site_a = await sim_site(nc, sim, a, secret_a, "+61491570201")
        site_b = await sim_site(nc, sim, b, secret_b, "+61491570202")
        await known_to(gw, site_a, site_b)
        before = await refused(gw)
        to_a = inbound(number(3), "+61491570201", "STOP")
        to_b = inbound(number(4), "+61491570202", "STOP")
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            b_for_a = await http.post(
                webhook_url(gw), content=to_a, headers=sim_headers(a.name, secret_b, to_a)
            )
            a_for_b = await http.post(
                webhook_url(gw), content=to_b, headers=sim_headers(b.name, secret_a, to_b)
            )
            # Signed for A, but its body claims B's account: A's secret does not speak for B.
            claims_b = json.dumps({**json.loads(to_b), "account": b.name}).encode()
            a_as_b = await http.post(
                webhook_url(gw), content=claims_b, headers=sim_headers(a.name, secret_a, claims_b)
            )
        assert (b_for_a.status_code, a_for_b.status_code, a_as_b.status_code) == (401, 401, 401)
        assert_counted(before, await refused(gw), bad_signature=2, account_mismatch=1)
        # Each account's own replies, signed by the simulator, still arrive.
        await sim.reply(a, number(5), "STOP", to="+61491570201")
        await sim.reply(b, number(6), "STOP", to="+61491570202")
        await wait_until(lambda: at_least(nc, OPTOUTS, 2), timeout=20, message="2 opt-outs")
    assert sorted(await opted_out(nc)) == [number(5), number(6)]


# --- Twilio ----------------------------------------------------------------------------------


def twilio_form(account_sid: str, sender: str, to: str, body: str) -> list[tuple[str, str]]:
    return [
        ("AccountSid", account_sid),
        ("Body", body),
        ("From", sender),
        ("MessageSid", "SM" + secrets.token_hex(16)),
        ("To", to),
    ]


async def provider_test(nc: Client, site: dict[str, str]) -> dict[str, Any]:
    reply = await nc.request(
        subjects.rpc("sms_gateway", "provider_test"),
        json.dumps({"site_id": site["site"], "group_id": site["group"]}).encode(),
        timeout=15,
    )
    answer: dict[str, Any] = json.loads(reply.data)
    return answer


async def test_a_twilio_webhook_counts_only_with_a_token_a_provider_test_succeeded_with(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, twilio: TwilioDouble
) -> None:
    victim: TwilioAccount = twilio.account()
    number_v = "+61491570301"
    victim_provider = {
        "kind": "twilio",
        "account_id": victim.sid,
        "secret": victim.token,
        "base_url": twilio.url,
    }
    # Another group's site manager types the victim's Account SID with a token they chose.
    chosen = secrets.token_hex(16)
    copied = {**victim_provider, "secret": chosen}
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        hook = f"{gw.webhook_base_url()}/webhooks/sms/twilio"
        site_v = await site_with(nc, victim_provider, number_v)
        site_x = await site_with(nc, copied, "+61491570302")
        await known_to(gw, site_v, site_x)
        before = await refused(gw)

        async def post(token: str, sender: str, text: str) -> int:
            form = twilio_form(victim.sid, sender, number_v, text)
            async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
                response = await http.post(
                    hook,
                    data=dict(form),
                    headers={"X-Twilio-Signature": twilio_signature(token, hook, form)},
                )
            return response.status_code

        # No test has succeeded yet: not even the right token counts.
        assert await post(victim.token, number(7), "STOP") == 401
        assert (await provider_test(nc, site_x))["ok"] is False, "Twilio refuses the chosen token"
        assert await post(chosen, number(8), "STOP") == 401
        assert (await provider_test(nc, site_v))["ok"] is True
        assert await post(chosen, number(9), "STOP") == 401, "the copied SID's token"
        assert_counted(before, await refused(gw), untested_account=2, bad_signature=1)
        # Twilio's own webhook, signed with the tested token, is believed (not refused). The
        # copied SID still spans two groups here (written past the config API's 409), so the
        # reply is kept unrouted for an operator instead of opting out a guessed group.
        _, code = await twilio.inbound(victim, hook, number(10), number_v, "STOP")
        assert code == 200
        assert_counted(before, await refused(gw), untested_account=2, bad_signature=1)

        async def kept() -> list[dict[str, Any]] | None:
            rows = await unrouted.listing(gw.ctx.db)
            return rows or None

        rows = await wait_until(kept, timeout=20, message="the reply kept unrouted")
        assert [(r["from_number"], r["code"]) for r in rows] == [(number(10), "shared_account")]
    assert await events(nc, OPTOUTS) == []


# --- simulator enablement --------------------------------------------------------------------


async def test_without_the_simulator_enabled_its_route_is_absent(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    async with gateway_running(nats_url, database_url, tmp_path, simulator=False) as gw:
        site = await site_with(
            nc,
            {"kind": "simulator", "account_id": "sim-default", "secret": "sim-dev-key"},
            "+61491570401",
        )
        await known_to(gw, site)
        body = inbound(number(11), "+61491570401", "STOP")
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            simulator = await http.post(
                webhook_url(gw),
                content=body,
                headers=sim_headers("sim-default", DEV_WEBHOOK_SECRET, body),
            )
            twilio_route = await http.post(f"{gw.webhook_base_url()}/webhooks/sms/twilio")
        assert simulator.status_code == 404
        assert twilio_route.status_code == 401, "the other webhooks are served"
    assert await events(nc, INBOUND) == [] and await events(nc, OPTOUTS) == []


async def test_without_the_simulator_enabled_its_provider_kind_is_refused(
    nc: Client, nats_url: str, tmp_path: Path
) -> None:
    env = service_env(
        nats_url,
        tmp_path / "var",
        extra={"STAGGER_SECRET_KEY": generate_key(), "STAGGER_SMS_SIMULATOR_ENABLED": "false"},
    )
    config = start_service("config", env)
    try:
        group = f"g-{uuid.uuid4().hex[:8]}"
        await handlers(nc).create_group(group, group, {}, actor="test:operator")
        _, token = await issue_token(nc, group_id=group, role="group_admin", label="test")
        simulator = {"kind": "simulator", "account_id": "sim-default", "secret": "sim-dev-key"}
        async with httpx.AsyncClient(
            base_url=config.url, headers={"Authorization": f"Bearer {token}"}, timeout=30
        ) as api:
            sim_site, plain_site = f"s-{uuid.uuid4().hex[:8]}", f"s-{uuid.uuid4().hex[:8]}"
            created = await api.post(
                f"/api/v1/groups/{group}/sites",
                json={
                    "site_id": sim_site,
                    "name": "High Street",
                    "timezone": "Europe/London",
                    "region": "UK",
                    "settings": {"sms": {"provider": simulator}},
                },
            )
            assert created.status_code == 422, created.text
            assert [e["field"] for e in created.json()["errors"]] == ["sms.provider.kind"]
            assert (await api.get(f"/api/v1/sites/{sim_site}")).status_code == 404, "not stored"
            plain = await api.post(
                f"/api/v1/groups/{group}/sites",
                json={
                    "site_id": plain_site,
                    "name": "Plain",
                    "timezone": "Europe/London",
                    "region": "UK",
                    "settings": {},
                },
            )
            assert plain.status_code == 201, plain.text
            current = await api.get(f"/api/v1/sites/{plain_site}")
            changed = await api.patch(
                f"/api/v1/sites/{plain_site}/settings",
                json={"set": {"sms": {"provider": simulator}}},
                headers={"If-Match": current.headers["ETag"]},
            )
            assert changed.status_code == 422, changed.text
            assert [e["field"] for e in changed.json()["errors"]] == ["sms.provider.kind"]
            after = await api.get(f"/api/v1/sites/{plain_site}")
            assert after.json()["settings"]["sms"]["provider"]["kind"] == "none"
            assert after.headers["ETag"] == current.headers["ETag"]
    finally:
        config.stop()


# --- sizes -----------------------------------------------------------------------------------


async def _answer(reader: asyncio.StreamReader) -> bytes:
    """The status line and headers of the server's answer."""
    return await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), ANSWER_SECONDS)


async def test_a_webhook_over_64_kib_is_refused_before_the_rest_of_it_is_sent(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        port = gw.ctx.config.sms_gateway_http_port
        before = await refused(gw)
        paths = ("/webhooks/sms/simulator", "/webhooks/sms/twilio", "/webhooks/sms/twilio/status")
        for path in paths:
            # A declared length over the cap: answered with no byte of the body sent.
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(
                f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Content-Type: application/json\r\nContent-Length: {16 * CAP}\r\n\r\n".encode()
            )
            await writer.drain()
            head = await _answer(reader)
            assert head.startswith(b"HTTP/1.1 413"), (path, head)
            writer.close()
        # A chunked body (no declared length) that goes over: cut off at the cap, answered
        # while the body is still unfinished (its last chunk is never sent).
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(
            b"POST /webhooks/sms/simulator HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        chunk = b"x" * (16 * 1024)
        for _ in range(5):  # 80 KiB
            writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        await writer.drain()
        head = await _answer(reader)
        assert head.startswith(b"HTTP/1.1 413"), head
        # The server hangs up rather than reading the rest (EOF, or the wait times out).
        await asyncio.wait_for(reader.read(), ANSWER_SECONDS)
        writer.close()
        assert_counted(before, await refused(gw), too_large=len(paths) + 1)
        # A body under the cap is still read and judged on its signature.
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            small = await http.post(webhook_url(gw), content=b"{" + b" " * (CAP - 2) + b"}")
        assert small.status_code == 401


# --- counting and logging --------------------------------------------------------------------


async def test_refused_webhooks_are_counted_by_reason_and_logged_at_a_bounded_rate(
    nc: Client,
    nats_url: str,
    database_url: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="services.sms_gateway.entrypoints.refusals")
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        before = await refused(gw)
        body = inbound(number(12), "+61491570501", "STOP")
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            for _ in range(20):
                r = await http.post(
                    webhook_url(gw),
                    content=body,
                    headers=sim_headers("nobody-uses-this", DEV_WEBHOOK_SECRET, body),
                )
                assert r.status_code == 401
            unnamed = await http.post(webhook_url(gw), content=body)
            assert unnamed.status_code == 401
        assert_counted(before, await refused(gw), unknown_account=20, no_account=1)
    lines = [r for r in caplog.records if r.getMessage() == "webhook refused"]
    per_reason = {
        reason: sum(1 for r in lines if getattr(r, "reason", None) == reason)
        for reason in ("unknown_account", "no_account")
    }
    assert all(n <= 1 for n in per_reason.values()), per_reason
