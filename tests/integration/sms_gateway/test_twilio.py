"""The Twilio adapter against a local double of Twilio's REST API: sends with status
callbacks, signed inbound messages, an answer that never came, opt-outs, balance."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import httpx
from nats.aio.client import Client

from services.sms_gateway.adapters.providers.twilio import signature
from shared.bus import subjects
from shared.bus.topology import DISPATCH, INBOUND, OPTOUTS
from tests.integration.dispatch.harness import send_tick
from tests.integration.sms_gateway.harness import (
    AccountTicks,
    account_of,
    at_least,
    events,
    gateway_running,
    handlers,
    midday_zone,
    number,
    opted_out,
    submit,
    terminal,
    wait_queued,
    wait_terminal,
)
from tests.support.twilio_double import (
    TwilioAccount,
    TwilioDouble,
    twilio_fixture,  # noqa: F401  (the `twilio` fixture)
    twilio_signature,
)
from tests.support.waiting import wait_until

FROM = "+61491570777"
RECEIPTS = ("stagger.dispatch.delivered", "stagger.dispatch.undelivered")


def test_signature_matches_twilios_published_example() -> None:
    # Twilio's documented example (token 12345): the gateway and the double agree with it.
    url = "https://mycompany.com/myapp.php?foo=1&bar=2"
    params = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ]
    assert signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
    assert twilio_signature("12345", url, params) == "0/KCTR6DLpKmkAf8muzZqo1nDgQ="


async def twilio_site(
    nc: Client, double: TwilioDouble, account: TwilioAccount, mode: str = "staggered"
) -> dict[str, str]:
    h = handlers(nc)
    group, site = "g-twilio", "s-twilio"
    await h.create_group(group, group, {}, actor="test")
    provider = {
        "kind": "twilio",
        "account_id": account.sid,
        "secret": account.token,
        "base_url": double.url,
        "rate_per_second": 20,
    }
    await h.create_site(
        group,
        site,
        {"name": site, "timezone": midday_zone()},
        {"sms": {"provider": provider, "sender_id": FROM, "mode": mode}},
        actor="test",
    )
    return {
        "group": group,
        "site": site,
        "account": account_of("twilio", account.sid, double.url, group),
    }


async def test_sends_receipts_and_replies_through_twilio(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, twilio: TwilioDouble
) -> None:
    account = twilio.account(balance="5.00")
    twilio.undeliverable.add(number(2))
    site = await twilio_site(nc, twilio, account)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        # A provider test answers with money, not credits; once it succeeded, webhooks signed
        # with the site's token are believed.
        reply = await nc.request(
            subjects.rpc("sms_gateway", "provider_test"),
            json.dumps({"site_id": site["site"], "group_id": site["group"]}).encode(),
            timeout=15,
        )
        tested = json.loads(reply.data)
        ids = await submit(nc, site["site"], 3)
        await wait_queued(gw, 3)
        await send_tick(nc, site["site"], budget=3)
        await wait_terminal(nc, ids)
        await wait_until(
            lambda: at_least(nc, DISPATCH, 3, *RECEIPTS), timeout=20, message="3 receipts"
        )
        # A signed STOP from the patient; then a forged one, refused.
        hook = f"{gw.webhook_base_url()}/webhooks/sms/twilio"
        _, code = await twilio.inbound(account, hook, number(0), FROM, "STOP")
        assert code == 200
        forged = [
            ("AccountSid", account.sid),
            ("Body", "START"),
            ("From", number(0)),
            ("MessageSid", "SMforged"),
            ("To", FROM),
        ]
        async with httpx.AsyncClient(trust_env=False) as http:
            refused = await http.post(
                hook,
                data=dict(forged),
                headers={"X-Twilio-Signature": twilio_signature("not-the-token", hook, forged)},
            )
        assert refused.status_code == 401
    assert [p.status for p in twilio.posts] == [201, 201, 201]
    sent = {
        e.data.message_id: e.data for e in await events(nc, DISPATCH) if e.type.endswith(".sent")
    }
    assert {sent[i].provider_message_id for i in ids} == {m["sid"] for m in twilio.messages}
    receipts = {
        e.data.message_id: e.type
        for e in await events(nc, DISPATCH)
        if e.type.endswith("delivered")
    }
    assert receipts == {
        ids[0]: "stagger.dispatch.delivered",
        ids[1]: "stagger.dispatch.delivered",
        ids[2]: "stagger.dispatch.undelivered",
    }
    assert tested["ok"] is True and tested["unit"] == "money" and tested["provider"] == "twilio"
    assert tested["balance"] == 5
    reply_events = [e.data for e in await events(nc, INBOUND)]
    assert [(r.kind, r.in_reply_to, r.provider) for r in reply_events] == [
        ("optout", ids[0], "twilio")
    ]
    assert await opted_out(nc) == [number(0)]


async def test_an_unanswered_send_is_found_at_twilio_not_sent_again(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, twilio: TwilioDouble
) -> None:
    account = twilio.account()
    site = await twilio_site(nc, twilio, account)
    twilio.drop_next = 1
    twilio.fail_next = []
    async with gateway_running(nats_url, database_url, tmp_path, http_timeout_seconds=0.5) as gw:
        ids = await submit(nc, site["site"], 2, body="Same words for both")
        await wait_queued(gw, 2)
        await send_tick(nc, site["site"], budget=2, spacing=1.0)
        await wait_terminal(nc, ids)
    # Twilio's create is not idempotent: each message must be POSTed exactly once.
    assert [len(twilio.posts_for(ids_to)) for ids_to in (number(0), number(1))] == [1, 1]
    ends = await terminal(nc)
    assert {ends[i][0].type for i in ids} == {"stagger.dispatch.sent"}
    first = ends[ids[0]][0].data
    assert first.provider_message_id == twilio.messages[0]["sid"]


async def test_rate_limits_retry_and_unsubscribed_recipients_are_suppressed_later(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, twilio: TwilioDouble
) -> None:
    account = twilio.account()
    site = await twilio_site(nc, twilio, account, mode="immediate")
    twilio.fail_next = [429, 503]
    twilio.unsubscribed.add(number(1))
    async with gateway_running(nats_url, database_url, tmp_path):
        ids = await submit(nc, site["site"], 2)
        async with AccountTicks(nc, site["account"], [site["site"]], rate=20):
            await wait_terminal(nc, ids, timeout=30)
            later = await submit(nc, site["site"], 1, prefix="later", start=1)
            await wait_terminal(nc, later, timeout=30)
    ends = await terminal(nc)
    statuses = Counter(p.status for p in twilio.posts)
    assert (statuses[429], statuses[503]) == (1, 1), "both came back again"
    assert [p.status for p in twilio.posts_for(number(0))].count(201) == 1
    assert ends[ids[0]][0].type == "stagger.dispatch.sent"
    assert ends[ids[1]][0].type == "stagger.dispatch.failed"
    assert "21610" in ends[ids[1]][0].data.reason
    assert ends[later[0]][0].type == "stagger.dispatch.suppressed"
    assert [e.data.how for e in await events(nc, OPTOUTS)] == ["provider"]
    # The refusal was the last call for that number: the later message never reached Twilio.
    to_refused = [p.status for p in twilio.posts_for(number(1))]
    assert to_refused.count(400) == 1 and to_refused[-1] == 400
