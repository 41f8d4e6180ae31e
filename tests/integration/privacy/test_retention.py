"""Retention: with a 1-day retention and the clock moved on, bodies read "erased" while the
address and the delivery metadata stay (keys deleted, no stream message touched)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.aio.client import Client

from shared.bus import subjects
from shared.bus.topology import DISPATCH
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import MessageSent
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.privacy import RetentionSet
from shared.eventstore import EventStore
from shared.privacy.cipher import ERASED
from shared.privacy.codec import PersonalData
from shared.privacy.retention import apply_retention, policy_of, set_retention
from shared.secrets import SecretBox, generate_key


def _message(group: str, to: str, body: str) -> MessageAccepted:
    return MessageAccepted(
        message_id=f"m-{group}",
        group_id=group,
        site_id="s1",
        channel="sms",
        to=to,
        body=body,
        submitted_at=datetime.now(UTC),
    )


async def test_a_one_day_retention_erases_bodies_and_keeps_addresses_and_metadata(
    nc: Client,
) -> None:
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    short = await personal.seal_message(_message("g-short", "+61412000001", "Short-lived body"))
    kept = await personal.seal_message(_message("g-default", "+61412000002", "Kept body"))
    await set_retention(nc, RetentionSet(group_id="g-short", bodies_days=1), "test:admin")
    assert (await policy_of(nc, "g-default")).bodies_days == 90
    sent = make_event(
        MessageSent(
            message_id=short.message_id,
            group_id="g-short",
            site_id="s1",
            channel="sms",
            account="acc",
            sent_at=datetime.now(UTC),
        ),
        source="sms_gateway",
        actor="service:sms_gateway",
    )
    await EventStore(nc, DISPATCH).append(subjects.dispatch("sms", "s1"), sent)
    stored_before = [e.id async for e in EventStore(nc, DISPATCH).replay()]

    # Today nothing is old enough.
    assert await apply_retention(nc, personal, datetime.now(UTC)) == {"body": 0, "reply": 0}
    later = datetime.now(UTC) + timedelta(days=2)
    assert await apply_retention(nc, personal, later) == {"body": 1, "reply": 0}

    fresh = PersonalData(nc, personal.keys._box)  # another process: nothing cached
    opened = await fresh.open_message(short)
    assert (opened.to, opened.body) == ("+61412000001", ERASED)
    assert (await fresh.open_message(kept)).body == "Kept body"  # 90 days not yet over
    assert [e.id async for e in EventStore(nc, DISPATCH).replay()] == stored_before
