"""A cancel that reaches the gateway before some of its messages do (they are still on their way
through the outbox): those messages still end `cancelled` when they arrive, each with exactly
one terminal event, and never reach the provider."""

from __future__ import annotations

import uuid
from collections import Counter
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client

from services.config.handlers.submission import SubmissionIn, publish, validate
from shared.bus import subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.dispatch import schema
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.control import CancelRequested
from shared.events.schemas.dispatch import TERMINAL_TYPES
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    config_handlers,
    engine_running,
    make_site,
    send_tick,
    submit,
)
from tests.integration.dispatch.test_engine import dispatch_events, states
from tests.support.waiting import wait_until


async def _cancel(nc: Client, site: str, ids: list[str]) -> None:
    data = CancelRequested(
        group_id="g-transit", site_id=site, channel="sms", message_ids=ids, reason="recall"
    )
    headers, body = encode(make_event(data, source="tests", actor="user:u-42"))
    subject = subjects.gateway_control("sms", "cancel", site)
    await publisher_for(nc).publish_all([Outgoing(subject, body, headers)])


async def test_messages_cancelled_before_they_arrive_end_cancelled_once(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    site_id = "site-transit"
    await make_site(nc, group="g-transit", site=site_id)
    provider = FakeProvider()
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider)) as svc:
        stored = await submit(nc, site_id, 3, prefix="stored")

        async def queued(n: int) -> bool:
            return (await states(svc))[schema.QUEUED] == n

        await wait_until(lambda: queued(3), timeout=20, message="three queued")
        # The rest of the batch: accepted (ids known to the API) but not yet published.
        site = await config_handlers(nc).site(site_id)
        assert site is not None
        body = SubmissionIn.model_validate(
            {
                "channel": "sms",
                "messages": [
                    {"to": f"+44770090{i:04d}", "body": f"late {i}", "idempotency_key": f"t-{i}"}
                    for i in range(5)
                ],
            }
        )
        batch_id = str(uuid.uuid4())
        accepted, outgoing = validate(site, body, "test", batch_id=batch_id)
        late = [a.message_id for a in accepted]
        await _cancel(nc, site_id, stored + late)

        async def remembered() -> bool:
            m = SMS_TABLES.messages
            async with svc.engine.queue.db() as session:
                rows = await session.execute(
                    sa.select(sa.func.count()).where(m.c.state == schema.CANCEL_PENDING)
                )
                return rows.scalar() == len(late)

        await wait_until(remembered, timeout=20, message="the cancel remembered for late ids")
        assert await svc.engine.queue.depth() == 0, "a reminder is not a waiting message"
        await publish(nc, accepted, outgoing)  # now they arrive
        other = await submit(nc, site_id, 1, prefix="other")  # not named by the cancel

        async def settled() -> bool:
            now = await states(svc)
            return now[schema.CANCELLED] == 8 and now[schema.QUEUED] == 1

        await wait_until(settled, timeout=20, message="the late ones cancelled on arrival")
        await send_tick(nc, site_id, budget=20)
        await wait_until(lambda: len(provider.sent) == 1, timeout=15, message="the other sent")

        async def all_ended() -> bool:
            ends = [e for e in await dispatch_events(nc) if e.type in TERMINAL_TYPES]
            return len(ends) >= 9

        await wait_until(all_ended, timeout=20, message="nine terminal events")
    assert [m for m, _ in provider.sent] == other
    events = [e for e in await dispatch_events(nc) if e.data.site_id == site_id]
    ends = [e for e in events if e.type in TERMINAL_TYPES]
    assert Counter(e.data.message_id for e in ends) == Counter(stored + late + other)
    by_id = {e.data.message_id: e for e in ends}
    for message_id in stored + late:
        assert by_id[message_id].type == "stagger.dispatch.cancelled"
        assert by_id[message_id].data.reason == "recall"
        assert by_id[message_id].actor == "user:u-42", "the person who cancelled"
    # Each late message was announced as queued (with its batch) before it ended.
    queued_events = Counter(e.data.message_id for e in events if e.type.endswith(".queued"))
    assert all(queued_events[i] == 1 for i in late)
    late_queued = [e for e in events if e.type.endswith(".queued") and e.data.message_id in late]
    assert {e.data.batch_id for e in late_queued} == {batch_id}
