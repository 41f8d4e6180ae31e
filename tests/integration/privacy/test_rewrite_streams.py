"""`stagger privacy rewrite-streams` against a nats-server of its own (so its data directory
holds only this test's bytes) and the audit trail on SQLite.

Events are published as a version before sealing wrote them (numbers, addresses and texts in
clear); the audit service records them; the rewrite seals them in place. Then: the raw files
hold none of the clear values, every event is where it was and opens with the keys (and reads
"erased" after an erasure), the trail verifies and a rebuild gives the same hashes, a
projection's stored position is still right, and a second run finds nothing to do.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from pathlib import Path

import nats
import pytest
import sqlalchemy as sa
from nats.aio.client import Client
from nats.js.errors import NotFoundError
from sqlalchemy.ext.asyncio import AsyncSession

from services.audit.adapters.trail import records
from services.audit.composition import AuditService
from services.audit.handlers.queries import verify
from services.cli.rewrite_streams import RewriteRefused, Trail, rewrite, survey
from shared.bus import subjects
from shared.bus.restream import stored_messages
from shared.bus.topology import AUDIT, DISPATCH, INBOUND, OPTOUTS, ensure_streams
from shared.db.engine import create_engine, session_factory
from shared.db.projection import ProjectionRunner
from shared.events.codec import decode, encode
from shared.events.envelope import Envelope, make_event
from shared.events.schemas.dispatch import MessageQueued, MessageSent
from shared.events.schemas.optouts import RecipientOptedOut
from shared.events.schemas.privacy import StreamsRewritten
from shared.events.schemas.replies import ReplyReceived
from shared.eventstore import EventStore
from shared.privacy.cipher import ERASED, is_personal
from shared.privacy.codec import PersonalData
from shared.privacy.erasure import erase_recipient
from shared.runtime.nats_server import NatsServer, free_port
from shared.runtime.service import running
from shared.secrets import SecretBox, generate_key
from tests.integration.audit.test_trail import audit_settings
from tests.support.waiting import wait_until

NUMBER = "+61499887766"
ADDRESS = "rewrite.patient@example.org"
BODY = "Please cancel my root canal on Tuesday"
GROUP, SITE = "rw-group", "rw-site"
CLEAR = (NUMBER.encode(), ADDRESS.encode(), BODY.encode(), b"61499887766")


@pytest.fixture
async def own_nats(tmp_path: Path) -> AsyncIterator[tuple[NatsServer, Path]]:
    store = tmp_path / "nats"
    server = NatsServer(port=free_port(), store_dir=store, log_file=tmp_path / "nats.log")
    server.start()
    yield server, store
    server.stop()


def _event(data: object, subject: str, when: datetime) -> Envelope:
    return make_event(
        data,  # type: ignore[arg-type]
        source="old-version",
        actor="system",
        subject=subject,
        group_id=GROUP,
        site_id=SITE,
        time=when,
    )


async def _publish_old_events(nc: Client) -> None:
    """What a version before sealing stored: every personal field in clear."""
    js = nc.jetstream()
    when = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)
    # A message that was deleted later leaves DISPATCH starting after sequence 1 and with a
    # hole in the middle: both must survive the rewrite.
    for i, to in enumerate([NUMBER, ADDRESS, NUMBER, ADDRESS]):
        channel = "sms" if to == NUMBER else "email"
        queued = MessageQueued(
            message_id=f"m-{i}",
            group_id=GROUP,
            site_id=SITE,
            channel=channel,
            to=to,
            submitted_at=when,
        )
        headers, body = encode(_event(queued, f"m-{i}", when))
        await js.publish(subjects.dispatch(channel, SITE), body, headers=headers)
        sent = MessageSent(
            message_id=f"m-{i}",
            group_id=GROUP,
            site_id=SITE,
            channel=channel,
            account="acct",
            sent_at=when,
        )
        headers, body = encode(_event(sent, f"m-{i}", when))
        await js.publish(subjects.dispatch(channel, SITE), body, headers=headers)
    await js.delete_msg(DISPATCH, 1)
    await js.delete_msg(DISPATCH, 4)
    # As if they had expired long ago: AUDIT holds no copies of them either.
    await js.delete_stream(AUDIT)
    await ensure_streams(js)
    reply = ReplyReceived(
        group_id=GROUP,
        site_id=SITE,
        provider="simulator",
        provider_inbound_id="in-1",
        from_number=NUMBER,
        to="+61400000000",
        body=BODY,
        received_at=when,
        kind="unmatched",
    )
    headers, body = encode(_event(reply, "in-1", when))
    await js.publish(subjects.replies(SITE), body, headers=headers)
    opted = RecipientOptedOut(
        group_id=GROUP, channel="sms", recipient=NUMBER, how="keyword", keyword="STOP"
    )
    # Appended as the event store does, with the header JetStream checks on publish.
    await EventStore(nc, OPTOUTS).append(
        subjects.optouts(GROUP, "sms"), _event(opted, NUMBER, when), expected_version=0
    )


def _raw_hits(root: Path) -> list[str]:
    hits = []
    for path in [root, *root.rglob("*")] if root.is_dir() else [root]:
        if path.is_file():
            raw = path.read_bytes()
            hits += [f"{path.name}: {v.decode()}" for v in CLEAR if v in raw]
    return hits


class Applied:
    """A projection of INBOUND that only counts what it is given (its position is stored)."""

    name = "test.rewrite.replies"
    stream = INBOUND
    filter_subject = None

    def __init__(self) -> None:
        self.ids: list[str] = []

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        self.ids += [e.id for e in events]


async def _trail_hashes(url: str) -> list[tuple[int, str, str]]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = sa.select(records.c.position, records.c.event_id, records.c.hash)
            return [tuple(r) for r in await conn.execute(query.order_by(records.c.position))]
    finally:
        await engine.dispose()


async def _audit_caught_up(nats_url: str, url: str, tmp_path: Path, nc: Client) -> None:
    async with running(AuditService(), audit_settings(nats_url, url, tmp_path)):
        expected = (await nc.jetstream().stream_info(AUDIT)).state.messages

        async def done() -> bool:
            return len(await _trail_hashes(url)) == expected

        await wait_until(done, timeout=60, message="the trail recorded every AUDIT event")


async def test_rewrite_seals_old_events_in_place_and_rebuilds_the_trail(
    own_nats: tuple[NatsServer, Path], tmp_path: Path
) -> None:
    server, store = own_nats
    nc = await nats.connect(server.url)
    try:
        js = nc.jetstream()
        await ensure_streams(js)
        personal = PersonalData(nc, SecretBox([generate_key().encode()]))
        await _publish_old_events(nc)
        await wait_until(
            lambda: _audit_has(nc, 8), timeout=30, message="AUDIT copied the old events"
        )
        trail_url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
        await _audit_caught_up(server.url, trail_url, tmp_path, nc)
        old = await _trail_hashes(trail_url)
        engine = create_engine(trail_url)
        trail = Trail(engine, session_factory(engine))
        counter = Applied()
        await ProjectionRunner(nc, trail.db, counter).catch_up()
        assert len(counter.ids) == 1
        before = {name: (await js.stream_info(name)).state for name in (DISPATCH, INBOUND, OPTOUTS)}
        # The search finds the clear values where they are: it can fail.
        assert _raw_hits(store) and _raw_hits(tmp_path / "audit.db")

        sealed_ids = await _ids_with_clear_values(nc)
        found = await survey(nc)
        assert found.counts[DISPATCH] == (6, 3)  # m-0's queued event is gone with sequence 1
        assert found.counts[INBOUND] == (1, 1) and found.counts[OPTOUTS] == (1, 1)
        assert found.audit_clear == 5 and not found.problems

        # A reader left open (a service still running) stops the rewrite.
        reader = await js.pull_subscribe("dispatch.>", stream=DISPATCH)
        with pytest.raises(RewriteRefused, match=r"reader .* is open"):
            await rewrite(nc, personal, trail, actor="cli:test")
        await reader.unsubscribe()
        await _no_readers(nc)

        mapping = tmp_path / "hashes.jsonl"
        done = await rewrite(nc, personal, trail, actor="cli:test", mapping=mapping)
        assert done["sealed"] == {
            "OUTBOX": 0,
            "CONTROL": 0,
            "DISPATCH": 3,
            "INBOUND": 1,
            "OPTOUTS": 1,
        }
        await engine.dispose()

        # Nothing in clear in NATS's files or the trail's database.
        assert _raw_hits(tmp_path) == []

        # Every sequence where it was, same subject and event; the fields open with the keys.
        # (OPTOUTS holds one more: the rewrite's own record, after the old last sequence.)
        for name, state in before.items():
            after = (await js.stream_info(name)).state
            added = 1 if name == OPTOUTS else 0
            assert (after.first_seq, after.last_seq, after.messages) == (
                state.first_seq,
                state.last_seq + added,
                state.messages + added,
            )
        queued = decode(*await _raw(js, DISPATCH, 3))
        assert isinstance(queued.data, MessageQueued) and queued.subject == "m-1"
        assert is_personal(queued.data.to)
        assert await personal.open(GROUP, queued.data.to) == ADDRESS
        with pytest.raises(NotFoundError):
            await js.get_msg(DISPATCH, 4)  # the hole stays a hole
        reply = decode(*await _raw(js, INBOUND, 1))
        assert isinstance(reply.data, ReplyReceived)
        assert await personal.open(GROUP, reply.data.from_number) == NUMBER
        assert await personal.open(GROUP, reply.data.body) == BODY
        opted = decode(*await _raw(js, OPTOUTS, 1))
        assert isinstance(opted.data, RecipientOptedOut)
        assert opted.data.recipient_tag == personal.tag(GROUP, NUMBER)
        assert opted.subject == opted.data.recipient_tag  # it named the number in clear

        # The projection's position still fits: nothing applied twice, a new reply once.
        await ProjectionRunner(nc, trail.db, counter).catch_up()
        assert len(counter.ids) == 1
        answer = reply.data.model_copy(update={"provider_inbound_id": "in-2"})
        new_reply = _event(answer, "in-2", datetime.now(UTC))
        headers, body = encode(new_reply)
        ack = await js.publish(subjects.replies(SITE), body, headers=headers)
        assert ack.seq == before[INBOUND].last_seq + 1
        await ProjectionRunner(nc, trail.db, counter).catch_up()
        assert counter.ids[1:] == [new_reply.id]

        # The trail: rebuilt, intact, holding the rewrite's record with the old heads.
        engine = create_engine(trail_url)
        trail = Trail(engine, session_factory(engine))
        assert (await verify(trail.db)).ok
        new = await _trail_hashes(trail_url)
        assert len(new) == len(old) + 1  # the rewrite's record (the new reply is not in yet)
        # Each sealed event's record is new (its bytes changed); what follows it in its chain
        # too. (An unchanged event copied to the same position, before any sealed one of its
        # chain, keeps its hash.)
        old_by_id = {event_id: digest for _, event_id, digest in old}
        new_by_id = {event_id: digest for _, event_id, digest in new}
        assert len(sealed_ids) == 5
        assert all(old_by_id[i] != new_by_id[i] for i in sealed_ids)
        assert new_by_id.keys() - old_by_id.keys() == {done["event_id"]}
        record = await _rewrite_record(trail)
        assert record.old_records == len(old)
        assert record.old_chain_heads[0].hash in {h for _, _, h in old}
        lines = [json.loads(x) for x in mapping.read_text().splitlines()]
        assert {x["old_hash"] for x in lines if x["old_hash"]} == {h for _, _, h in old}
        await engine.dispose()
        rebuilt = f"sqlite+aiosqlite:///{tmp_path / 'rebuilt.db'}"
        await _audit_caught_up(server.url, rebuilt, tmp_path, nc)
        again_rebuilt = await _trail_hashes(rebuilt)
        assert again_rebuilt[: len(new)] == new and len(again_rebuilt) == len(new) + 1

        # An erasure afterwards reaches the rewritten events too.
        await erase_recipient(nc, personal, GROUP, NUMBER, "cli:test")
        reader_after = PersonalData(nc, personal.keys._box)
        assert await reader_after.open(GROUP, reply.data.body) == ERASED
        assert await reader_after.open(GROUP, reply.data.from_number) == ERASED

        # A second run finds nothing to do and changes nothing.
        again = await survey(nc)
        assert again.nothing_to_do, again.as_json()
        engine = create_engine(trail_url)
        result = await rewrite(nc, personal, Trail(engine, session_factory(engine)), actor="x")
        await engine.dispose()
        assert result["nothing_to_do"] is True
        assert len(await _trail_hashes(trail_url)) == len(new)
    finally:
        await nc.close()


async def _ids_with_clear_values(nc: Client) -> set[str]:
    found = set()
    for name in (DISPATCH, INBOUND, OPTOUTS):
        async for msg in stored_messages(nc, name):
            if NUMBER.encode() in msg.data or ADDRESS.encode() in msg.data:
                found.add((msg.headers or {})["ce-id"])
    return found


async def _audit_has(nc: Client, n: int) -> bool:
    return (await nc.jetstream().stream_info(AUDIT)).state.messages >= n


async def _raw(js, stream: str, seq: int) -> tuple[dict[str, str], bytes]:  # type: ignore[no-untyped-def]
    msg = await js.get_msg(stream, seq)
    return dict(msg.headers or {}), msg.data or b""


async def _no_readers(nc: Client) -> None:
    async def gone() -> bool:
        return not (await nc.jetstream().consumers_info(DISPATCH))

    await wait_until(gone, timeout=30, message="the test's reader was deleted")


async def _rewrite_record(trail: Trail) -> StreamsRewritten:
    async with trail.db() as session:
        row = (
            await session.execute(
                sa.select(records.c.data).where(records.c.type == StreamsRewritten.event_type)
            )
        ).scalar_one()
    return StreamsRewritten.model_validate_json(row)


async def _migrated(engine) -> None:  # type: ignore[no-untyped-def]
    from shared.db.migrate import migrate, service_chain

    await migrate(engine, [service_chain("audit", AuditService().migrations())])
