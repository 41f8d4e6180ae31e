"""Intake: a message that fails to be stored for a reason other than its content is retried a
bounded number of times, then dead-lettered with the reason; the rest of its batch goes on."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import create_async_engine

from shared.bus import outbox_ids, subjects
from shared.bus.publisher import Outgoing, publisher_for
from shared.dispatch.tuning import EngineTuning
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.messages import MessageAccepted
from tests.integration.dispatch.harness import (
    SMS_TABLES,
    FakeAdapter,
    FakeProvider,
    engine_running,
    make_site,
)
from tests.integration.hardening.fuzzing import DeadLetters
from tests.support.waiting import wait_until

ATTEMPTS = 3
RETRY = EngineTuning(recovery_seconds=0.5, intake_attempts=ATTEMPTS, intake_retry_seconds=0.3)


def accepted(group: str, site: str, message_id: str, n: int) -> Outgoing:
    data = MessageAccepted(
        message_id=message_id,
        group_id=group,
        site_id=site,
        channel="sms",
        to=f"+4477009{n:05d}",
        body="Hello",
        submitted_at=datetime.now(UTC),
    )
    headers, body = encode(make_event(data, source="tests", actor="test", event_id=message_id))
    headers["Nats-Msg-Id"] = outbox_ids.msg_id(site, message_id)
    return Outgoing(subjects.outbox("sms", site), body, headers)


async def stored(service: object) -> set[str]:
    m = SMS_TABLES.messages
    async with service.engine.queue.db() as session:  # type: ignore[attr-defined]
        return set((await session.execute(sa.select(m.c.message_id))).scalars())


async def test_a_message_for_a_site_not_known_yet_is_retried_then_dead_lettered(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-a")
    # One fetch takes all three: published before the gateway starts.
    await publisher_for(nc).publish_all(
        [
            accepted("g1", "site-a", "m-1", 1),
            accepted("g1", "site-nowhere", "m-lost", 2),
            accepted("g1", "site-a", "m-2", 3),
        ]
    )
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(nats_url, database_url, tmp_path, FakeAdapter(FakeProvider()), RETRY) as svc,
    ):
        await wait_until(lambda: letters.of("sms-outbox"), timeout=60, message="a dead letter")
        assert await stored(svc) == {"m-1", "m-2"}
    [letter] = letters.of("sms-outbox")
    assert letter.deliveries == ATTEMPTS
    assert letter.reason == f"not stored after {ATTEMPTS} attempts: unknown site site-nowhere"
    assert letter.subject == "outbox.sms.site-nowhere"


async def test_a_site_created_while_its_message_waits_takes_the_message(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-a")
    await publisher_for(nc).publish_all(
        [accepted("g1", "site-a", "m-1", 1), accepted("g1", "site-new", "m-early", 2)]
    )
    patient = EngineTuning(recovery_seconds=0.5, intake_attempts=50, intake_retry_seconds=0.3)
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(
            nats_url, database_url, tmp_path, FakeAdapter(FakeProvider()), patient
        ) as svc,
    ):
        await wait_until(lambda: _has(svc, "m-1"), timeout=30, message="m-1 stored")
        await make_site(nc, group="g1", site="site-new")
        await wait_until(lambda: _has(svc, "m-early"), timeout=60, message="m-early stored")
    assert letters.of("sms-outbox") == []


async def _has(svc: object, message_id: str) -> bool:
    return message_id in await stored(svc)


def _refuse_trigger(dialect: str) -> list[str]:
    """A trigger refusing one message id on insert: a real database error for one row."""
    if dialect == "sqlite":
        return [
            "CREATE TRIGGER refuse_one BEFORE INSERT ON sms_messages "
            "WHEN NEW.message_id = 'm-refused' "
            "BEGIN SELECT RAISE(ABORT, 'refused by the test trigger'); END"
        ]
    return [
        "CREATE FUNCTION refuse_one() RETURNS trigger AS $$ BEGIN "
        "IF NEW.message_id = 'm-refused' THEN "
        "RAISE EXCEPTION 'refused by the test trigger'; END IF; RETURN NEW; END $$ "
        "LANGUAGE plpgsql",
        "CREATE TRIGGER refuse_one BEFORE INSERT ON sms_messages "
        "FOR EACH ROW EXECUTE FUNCTION refuse_one()",
    ]


async def test_a_database_error_on_one_message_retries_it_and_stores_the_others(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    await make_site(nc, group="g1", site="site-a")
    provider = FakeProvider()
    async with engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider), RETRY):
        pass  # creates the tables (migrations), so the trigger can be added to them
    engine = create_async_engine(database_url)
    async with engine.begin() as conn:
        for statement in _refuse_trigger(engine.dialect.name):
            await conn.execute(sa.text(statement))
    await engine.dispose()
    await publisher_for(nc).publish_all(
        [
            accepted("g1", "site-a", "m-1", 1),
            accepted("g1", "site-a", "m-refused", 2),
            accepted("g1", "site-a", "m-2", 3),
        ]
    )
    async with (
        DeadLetters(nc).listening() as letters,
        engine_running(nats_url, database_url, tmp_path, FakeAdapter(provider), RETRY) as svc,
    ):
        await wait_until(lambda: letters.of("sms-outbox"), timeout=60, message="a dead letter")
        assert await stored(svc) == {"m-1", "m-2"}
    [letter] = letters.of("sms-outbox")
    assert letter.deliveries == ATTEMPTS
    assert letter.reason.startswith(f"not stored after {ATTEMPTS} attempts: ")
    assert "refused by the test trigger" in letter.reason
