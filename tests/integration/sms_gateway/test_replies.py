"""Inbound replies: STOP and START, reply keywords and the CANCEL clash, webhook security."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import httpx
import sqlalchemy as sa
from nats.aio.client import Client

from services.sms_gateway.adapters import tables
from shared.bus.topology import DEADLETTER, INBOUND, OPTOUTS
from shared.sms_signing import compute_signature
from tests.integration.dispatch.harness import send_tick
from tests.integration.sms_gateway.harness import (
    SENDER,
    WEBHOOK_SECRET,
    Sim,
    assert_exactly_once,
    at_least,
    events,
    gateway_running,
    make_site,
    number,
    opened_replies,
    submit,
    terminal,
    wait_queued,
    wait_terminal,
    webhook_url,
)
from tests.support.waiting import wait_until


async def replies(nc: Client) -> list:
    return await opened_replies(nc)


async def test_stop_suppresses_queued_and_later_messages_and_start_reverses_it(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    patient, other = number(1), number(2)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account = await sim.account(webhook=webhook_url(gw))
        site = await make_site(nc, sim, account, mode="staggered")
        queued = await submit(nc, site["site"], 3, prefix="a", to=patient)
        kept = await submit(nc, site["site"], 2, prefix="b", to=other)
        await wait_queued(gw, 5)
        await sim.reply(account, patient, "Stop")
        await wait_terminal(nc, queued, timeout=20)
        ends = await terminal(nc)
        assert {ends[i][0].type for i in queued} == {"stagger.dispatch.suppressed"}
        assert not set(kept) & set(ends), "the other patient's messages stay queued"
        # Later submissions to the patient end suppressed too, without a provider call.
        later = await submit(nc, site["site"], 1, prefix="c", to=patient)
        await wait_queued(gw, 3)
        await send_tick(nc, site["site"], budget=10)
        await wait_terminal(nc, later + kept, timeout=20)
        ends = await terminal(nc)
        assert ends[later[0]][0].type == "stagger.dispatch.suppressed"
        assert {ends[i][0].type for i in kept} == {"stagger.dispatch.sent"}
        # START: the patient can be reached again.
        await sim.reply(account, patient, "start")
        await wait_until(lambda: _opted_in(nc), timeout=20, message="opt-in recorded")
        again = await submit(nc, site["site"], 1, prefix="d", to=patient)
        await wait_queued(gw, 1)
        await send_tick(nc, site["site"], budget=10)
        await wait_terminal(nc, again, timeout=20)
    ends = await terminal(nc)
    assert ends[again[0]][0].type == "stagger.dispatch.sent"
    submitted = {s["reference"] for s in await sim.submissions(account)}
    assert submitted == set(kept + again), "suppressed messages never reached the provider"
    assert_exactly_once(await sim.submissions(account), kept + again)
    optouts = [e.data for e in await events(nc, OPTOUTS)]
    assert [(type(d).__name__, d.keyword, d.how) for d in optouts] == [
        ("RecipientOptedOut", "STOP", "keyword"),
        ("RecipientOptedIn", "START", "keyword"),
    ]
    assert optouts[0].group_id == site["group"] and optouts[0].cancelled_messages == 3
    kinds = [(r.kind, r.keyword, r.cancelled_messages) for r in await replies(nc)]
    assert kinds == [("optout", "STOP", 3), ("optin", "START", 0)]


async def test_reply_keywords_match_the_latest_message_and_cancel_depends_on_region(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    patient = number(7)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account = await sim.account(webhook=webhook_url(gw))
        uk = await make_site(nc, sim, account, mode="staggered")
        first = await submit(nc, uk["site"], 1, prefix="first", to=patient)
        await wait_queued(gw, 1)
        await send_tick(nc, uk["site"], budget=1)
        await wait_terminal(nc, first)
        latest = await submit(nc, uk["site"], 1, prefix="latest", to=patient)
        await wait_queued(gw, 1)
        await send_tick(nc, uk["site"], budget=1)
        await wait_terminal(nc, latest)
        await sim.reply(account, patient, "Yes!")
        await sim.reply(account, patient, "CANCEL")
        await sim.reply(account, patient, "yes but I'll be 5 minutes late")
        await wait_until(lambda: at_least(nc, INBOUND, 3), timeout=20, message="3 replies")
        # A US site of another group, its own sender: CANCEL is a carrier opt-out there.
        us_account = await sim.account(webhook=webhook_url(gw))
        us = await make_site(
            nc,
            sim,
            us_account,
            mode="staggered",
            profile={"region": "US"},
            sms={"sender_id": "+61491570888"},
        )
        await sim.reply(us_account, patient, "cancel", to="+61491570888")
        await wait_until(lambda: at_least(nc, INBOUND, 4), timeout=20, message="4 replies")
    got = await replies(nc)
    # The simulator delivers webhooks concurrently: the three UK replies in any order.
    assert {r.body: (r.kind, r.meaning, r.in_reply_to) for r in got[:3]} == {
        "Yes!": ("keyword", "confirm", latest[0]),
        "CANCEL": ("keyword", "cancel", latest[0]),
        "yes but I'll be 5 minutes late": ("unmatched", None, latest[0]),
    }
    assert {r.site_id for r in got[:3]} == {uk["site"]}
    assert (got[3].kind, got[3].keyword, got[3].site_id) == ("optout", "CANCEL", us["site"])
    optouts = [e.data for e in await events(nc, OPTOUTS)]
    assert [(d.group_id, d.keyword) for d in optouts] == [(us["group"], "CANCEL")]


async def test_webhooks_refuse_bad_signatures_ignore_repeats_and_dead_letter_garbage(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account = await sim.account(webhook=webhook_url(gw))
        site = await make_site(nc, sim, account, mode="staggered")
        url = webhook_url(gw)
        inbound = {
            "type": "inbound",
            "account": account.name,
            "id": "sim-in-0001",
            "from": number(3),
            "to": SENDER,
            "body": "STOP",
            "received_at": "2026-11-26T23:07:01.004211+00:00",
            "in_reply_to": None,
        }
        body = json.dumps(inbound).encode()
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            missing = await http.post(url, content=body)
            forged = await http.post(
                url, content=body, headers=_signed(account.name, body, "wrong-secret")
            )
            stale = await http.post(
                url,
                content=body,
                headers=_signed(account.name, body, WEBHOOK_SECRET, time.time() - 3600),
            )
            assert (missing.status_code, forged.status_code, stale.status_code) == (401, 401, 401)
            assert await _stored_webhooks(gw) == 0
            assert await events(nc, INBOUND) == [] and await events(nc, OPTOUTS) == []
            assert await events(nc, DEADLETTER) == []
            first = await http.post(
                url, content=body, headers=_signed(account.name, body, WEBHOOK_SECRET)
            )
            again = await http.post(
                url, content=body, headers=_signed(account.name, body, WEBHOOK_SECRET)
            )
            assert (first.status_code, again.status_code) == (200, 200)
            garbage = b'{"type": "inbound", "id": 5'
            bad = await http.post(
                url, content=garbage, headers=_signed(account.name, garbage, WEBHOOK_SECRET)
            )
            assert bad.status_code == 400
            odd = json.dumps({"type": "mystery"}).encode()
            worse = await http.post(
                url, content=odd, headers=_signed(account.name, odd, WEBHOOK_SECRET)
            )
            assert worse.status_code == 400
        await wait_until(lambda: at_least(nc, INBOUND, 1), timeout=10, message="the reply")
        await wait_until(lambda: at_least(nc, DEADLETTER, 2), timeout=10, message="2 dead letters")
        # Still working afterwards: a real reply from the simulator goes through.
        await sim.reply(account, number(4), "YES")
        await wait_until(lambda: at_least(nc, INBOUND, 2), timeout=20, message="another reply")
    assert len(await events(nc, OPTOUTS)) == 1, "the repeated webhook was acted on once"
    dead = [e.data for e in await events(nc, DEADLETTER)]
    assert Counter(d.consumer for d in dead) == Counter({"sms-webhooks": 2})
    assert "not JSON" in dead[0].reason and "unknown webhook type" in dead[1].reason
    assert all("x-sim-signature" not in {k.lower() for k in d.headers} for d in dead)
    assert site["site"] in {r.site_id for r in await replies(nc)}


def _signed(account: str, body: bytes, secret: str, at: float | None = None) -> dict[str, str]:
    timestamp = int(at if at is not None else time.time())
    return {
        "Content-Type": "application/json",
        "X-Sim-Account": account,
        "X-Sim-Timestamp": str(timestamp),
        "X-Sim-Signature": compute_signature(secret, timestamp, body),
    }


async def _stored_webhooks(gw) -> int:
    async with gw.ctx.db() as session:
        return int(
            (
                await session.execute(sa.select(sa.func.count()).select_from(tables.webhook_events))
            ).scalar()
            or 0
        )


async def _opted_in(nc: Client) -> bool:
    return any(type(e.data).__name__ == "RecipientOptedIn" for e in await events(nc, OPTOUTS))
