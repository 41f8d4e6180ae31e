"""Consent categories end to end: a patient's replies through the provider simulator's webhook
(real nats-server, SQLite, the simulator) decide which of a group's messages still go out.

A marketing-only opt-out ("STOP RECALLS") stops recalls but not reminders; STOP stops both;
START restores both."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from nats.aio.client import Client

from services.config.handlers.submission import SubmissionIn, publish, validate
from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import DEADLETTER, DISPATCH, INBOUND, OPTOUTS
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.messages import MessageAccepted
from tests.integration.dispatch.harness import send_tick
from tests.integration.sms_gateway.harness import (
    Sim,
    assert_exactly_once,
    at_least,
    events,
    gateway_running,
    handlers,
    make_site,
    number,
    terminal,
    wait_queued,
    wait_terminal,
    webhook_url,
)
from tests.support.waiting import wait_until

SENT, SUPPRESSED = "stagger.dispatch.sent", "stagger.dispatch.suppressed"


async def submit_pair(nc: Client, site_id: str, to: str, tag: str) -> tuple[str, str]:
    """A recall (marketing by default) and an appointment reminder (service) to `to`."""
    site = await handlers(nc).site(site_id)
    batch = SubmissionIn.model_validate(
        {
            "channel": "sms",
            "messages": [
                {"to": to, "body": "Time for your check-up: call us to book.",
                 "category": "recall", "idempotency_key": f"recall-{tag}"},
                {"to": to, "body": "Your appointment is on Monday at 10:00.",
                 "category": "reminder", "idempotency_key": f"reminder-{tag}"},
            ],
        }
    )  # fmt: skip
    accepted, outgoing = validate(site, batch, "test")
    await publish(nc, accepted, outgoing)
    recall, reminder = (a.message_id for a in accepted)
    return recall, reminder


async def outcome(nc: Client, *ids: str) -> list[str]:
    ends = await terminal(nc)
    return [ends[i][0].type for i in ids]


async def test_marketing_opt_out_stops_recalls_not_reminders_stop_stops_both_start_restores(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path, sim: Sim
) -> None:
    patient = number(41)
    async with gateway_running(nats_url, database_url, tmp_path) as gw:
        account = await sim.account(webhook=webhook_url(gw))
        site = await make_site(nc, sim, account, mode="staggered")
        sid = site["site"]
        # Queued before the patient answers: the marketing opt-out ends the recall at once.
        early_recall, early_reminder = await submit_pair(nc, sid, patient, "early")
        await wait_queued(gw, 2)
        await sim.reply(account, patient, "Stop recalls")
        await wait_until(lambda: at_least(nc, OPTOUTS, 1), timeout=20, message="marketing out")
        await wait_terminal(nc, [early_recall], timeout=20)
        assert await outcome(nc, early_recall) == [SUPPRESSED]
        assert early_reminder not in await terminal(nc), "the reminder stays queued"
        # Submitted after it: the recall is suppressed at send time, reminders still go.
        recall, reminder = await submit_pair(nc, sid, patient, "after-marketing")
        await wait_queued(gw, 3)
        await send_tick(nc, sid, budget=10)
        await wait_terminal(nc, [early_reminder, recall, reminder], timeout=30)
        assert await outcome(nc, early_reminder, recall, reminder) == [SENT, SUPPRESSED, SENT]
        # STOP: every category.
        await sim.reply(account, patient, "STOP")
        await wait_until(lambda: at_least(nc, OPTOUTS, 2), timeout=20, message="STOP recorded")
        stop_recall, stop_reminder = await submit_pair(nc, sid, patient, "after-stop")
        await wait_queued(gw, 2)
        await send_tick(nc, sid, budget=10)
        await wait_terminal(nc, [stop_recall, stop_reminder], timeout=30)
        assert await outcome(nc, stop_recall, stop_reminder) == [SUPPRESSED, SUPPRESSED]
        # START: every category again, the marketing opt-out before STOP included.
        await sim.reply(account, patient, "start")
        await wait_until(lambda: at_least(nc, OPTOUTS, 3), timeout=20, message="START recorded")
        back_recall, back_reminder = await submit_pair(nc, sid, patient, "after-start")
        await wait_queued(gw, 2)
        await send_tick(nc, sid, budget=10)
        await wait_terminal(nc, [back_recall, back_reminder], timeout=30)
        assert await outcome(nc, back_recall, back_reminder) == [SENT, SENT]
        await wait_until(lambda: at_least(nc, INBOUND, 3), timeout=20, message="3 replies")
    went = [early_reminder, reminder, back_recall, back_reminder]
    assert {s["reference"] for s in await sim.submissions(account)} == set(went)
    assert_exactly_once(await sim.submissions(account), went)
    optouts = [e.data for e in await events(nc, OPTOUTS)]
    assert [(type(d).__name__, d.keyword, d.category) for d in optouts] == [
        ("RecipientOptedOut", "STOP RECALLS", "marketing"),
        ("RecipientOptedOut", "STOP", None),
        ("RecipientOptedIn", "START", None),
    ]
    assert optouts[0].cancelled_messages == 1
    replies = [e.data for e in await events(nc, INBOUND)]
    assert [(r.kind, r.optout_category) for r in replies] == [
        ("optout", "marketing"),
        ("optout", None),
        ("optin", None),
    ]
    # The dispatch events carry the category: the audit trail shows it.
    queued = {
        e.data.message_id: e.data.consent_category  # type: ignore[attr-defined]
        for e in await events(nc, DISPATCH)
        if e.type == "stagger.dispatch.queued"
    }
    assert queued[recall] == "marketing" and queued[reminder] == "service"


async def test_a_bus_producer_may_leave_the_category_out_but_not_name_an_unknown_one(
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
            "body": "Time for your check-up",
            "submitted_at": datetime.now(UTC),
        }
        left_out = MessageAccepted(message_id="left-out", to=number(51), category="recall", **base)
        unknown = MessageAccepted(
            message_id="unknown", to=number(52), consent_category="promo", **base
        )
        await publisher_for(nc).publish_all([_outgoing(outbox, m) for m in (left_out, unknown)])
        await wait_until(lambda: at_least(nc, DEADLETTER, 1), timeout=30, message="dead letter")
        await wait_queued(gw, 1)
    (dead,) = [e.data for e in await events(nc, DEADLETTER)]
    assert "consent_category: 'promo' is not one of the group's consent categories" in dead.reason
    queued = [e.data for e in await events(nc, DISPATCH) if e.type == "stagger.dispatch.queued"]
    assert [(q.message_id, q.consent_category) for q in queued] == [("left-out", "marketing")]


def _outgoing(subject: str, message: MessageAccepted) -> Outgoing:
    headers, body = encode(
        make_event(message, source="tests", actor="test", event_id=message.message_id)
    )
    return Outgoing(subject, body, headers)
