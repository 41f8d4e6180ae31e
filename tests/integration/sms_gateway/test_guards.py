"""Before the provider: the quiet-hours guard in the recipient's time, validation, dead
letters, and the provider test over request/reply."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import DEADLETTER, DISPATCH, PROVIDERS
from shared.domain.phone import timezone_for_number
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.messages import MessageAccepted
from tests.integration.dispatch.harness import send_tick
from tests.integration.sms_gateway.harness import (
    Sim,
    at_least,
    events,
    gateway_running,
    make_site,
    midday_zone,
    number,
    submit,
    terminal,
    wait_queued,
    wait_terminal,
)
from tests.support.waiting import wait_until

# Numbers whose holder's zone is known from the number alone (country or US area code).
ZONED = ["+819012345678", "+4915112345678", "+18082345678", "+12122345678", "+6591234567"]


def far_number() -> tuple[str, str]:
    """A number whose local time now is at least four hours from the midday zone's."""
    now = datetime.now(UTC)
    here = now.astimezone(ZoneInfo(midday_zone()))

    def distance(phone: str) -> float:
        there = now.astimezone(ZoneInfo(timezone_for_number(phone, "UTC")))
        hours = ((there.utcoffset() or timedelta()) - (here.utcoffset() or timedelta())) / (
            timedelta(hours=1)
        )
        return min(hours % 24, -hours % 24)

    best = max(ZONED, key=distance)
    assert distance(best) >= 4
    return best, timezone_for_number(best, "UTC")


async def test_quiet_hours_hold_a_message_until_the_recipients_morning(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    far, zone = far_number()
    account = await sim.account()
    # Open 11:00-14:00: the site's zone (about midday) is inside, the far number is not.
    site = await make_site(
        nc, sim, account, mode="staggered", sms={"quiet_hours": {"start": "11:00", "end": "14:00"}}
    )
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        near = await submit(nc, site["site"], 1, prefix="near")
        later = await submit(nc, site["site"], 1, prefix="far", to=far)
        await wait_queued(gw, 2)
        await send_tick(nc, site["site"], budget=5)
        await wait_terminal(nc, near)
        deferred = await wait_until(
            lambda: _deferred(nc, later[0]), timeout=20, message="deferred event"
        )
        assert await gw.engine.queue.depth(site["site"]) == 1
    assert [s["reference"] for s in await sim.submissions(account)] == near
    assert later[0] not in await terminal(nc)
    event = deferred[0].data
    assert "quiet hours" in event.reason and zone in event.reason
    local = event.retry_at.astimezone(ZoneInfo(zone))
    assert (local.hour, local.minute) == (11, 0)
    assert event.retry_at > datetime.now(UTC)


async def test_bad_bus_messages_are_dead_lettered_or_failed_and_the_gateway_goes_on(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    account = await sim.account()
    site = await make_site(nc, sim, account, mode="staggered")
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        outbox = subjects.outbox("sms", site["site"])
        base = {
            "group_id": site["group"],
            "site_id": site["site"],
            "channel": "sms",
            "body": "Hello",
            "submitted_at": datetime.now(UTC),
        }
        bad_number = MessageAccepted(message_id="bad-number", to="0412 345 678", **base)
        too_long = MessageAccepted(
            message_id="too-long", to=number(1), **{**base, "body": "x" * 1601}
        )
        elsewhere = MessageAccepted(
            message_id="no-such-site", to=number(2), **{**base, "site_id": "nowhere"}
        )
        published = [
            Outgoing(outbox, b"not an event at all", {"Nats-Msg-Id": "garbage-1"}),
            *[_outgoing(outbox, m) for m in (bad_number, too_long, elsewhere)],
            Outgoing(subjects.tick_site("sms", site["site"]), b"{}", {"Nats-Msg-Id": "bad-tick"}),
        ]
        await publisher_for(nc).publish_all(published)
        await wait_until(lambda: at_least(nc, DEADLETTER, 3), timeout=30, message="3 dead letters")
        good = await submit(nc, site["site"], 1)
        await wait_queued(gw, 3)
        await send_tick(nc, site["site"], budget=5)
        await wait_terminal(nc, ["bad-number", "too-long", *good])
    ends = await terminal(nc)
    assert ends[good[0]][0].type == "stagger.dispatch.sent"
    assert ends["bad-number"][0].type == "stagger.dispatch.failed"
    assert "E.164" in ends["bad-number"][0].data.reason
    assert ends["too-long"][0].type == "stagger.dispatch.failed"
    assert "1601 characters" in ends["too-long"][0].data.reason
    reasons = sorted(e.data.reason for e in await events(nc, DEADLETTER))
    assert any("is not the outbox of site nowhere" in r for r in reasons), reasons
    assert len(reasons) == 3
    assert [s["reference"] for s in await sim.submissions(account)] == good


async def test_provider_test_reports_the_balance_or_the_providers_error(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    account = await sim.account(credits=321)
    good = await make_site(nc, sim, account, mode="staggered")
    wrong = await sim.account()
    wrong.api_key = "not-the-key"
    bad = await make_site(nc, sim, wrong, mode="staggered", group=good["group"])
    async with gateway_running(nats_url, database_url, tmp_path):
        ok = await _test(nc, good)
        refused = await _test(nc, bad)
        unknown = await _test(nc, {"site": "nowhere", "group": good["group"]})
        await wait_until(
            lambda: at_least(nc, PROVIDERS, 2, "stagger.provider.tested"),
            timeout=10,
            message="2 test events",
        )
    assert ok == {
        "ok": True,
        "balance": 321,
        "unit": "credits",
        "currency": None,
        "postpaid": False,
        "error": None,
        "provider": "simulator",
    }
    assert refused["ok"] is False and refused["balance"] is None
    assert "refused the API key" in refused["error"]
    assert unknown["ok"] is False and "unknown site" in unknown["error"]
    found = [e for e in await events(nc, PROVIDERS) if e.type == "stagger.provider.tested"]
    assert [(e.data.site_id, e.data.ok) for e in found] == [
        (good["site"], True),
        (bad["site"], False),
    ]
    assert found[0].actor == "user:tester"
    balances = [e.data for e in await events(nc, PROVIDERS) if e.type.endswith("balance_reported")]
    assert [(b.balance, b.source) for b in balances] == [(321, "test")]


async def _test(nc: Client, site: dict[str, str]) -> dict:
    reply = await nc.request(
        subjects.rpc("sms_gateway", "provider_test"),
        json.dumps(
            {"site_id": site["site"], "group_id": site["group"], "actor": "user:tester"}
        ).encode(),
        timeout=15,
    )
    return dict(json.loads(reply.data))


def _outgoing(subject: str, message: MessageAccepted) -> Outgoing:
    headers, body = encode(
        make_event(message, source="tests", actor="test", event_id=message.message_id)
    )
    return Outgoing(subject, body, headers)


async def _deferred(nc: Client, message_id: str) -> list:
    return [
        e
        for e in await events(nc, DISPATCH)
        if e.type == "stagger.dispatch.deferred" and e.data.message_id == message_id
    ]
