"""`stagger privacy rewrite-streams`: a waiting outbox message, AUDIT copies of expired events,
runs stopped half-way, and the command itself on SQLite and PostgreSQL (the session's
nats-server; the raw-bytes test with a server of its own is in test_rewrite_streams.py)."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest
from nats.aio.client import Client

from services.audit.handlers.queries import verify
from services.cli.rewrite_streams import Trail, rewrite, survey
from shared.bus import subjects
from shared.bus.topology import AUDIT, DISPATCH, INBOUND
from shared.db.engine import create_engine, session_factory
from shared.events.codec import decode, encode
from shared.events.schemas.dispatch import MessageQueued
from shared.events.schemas.replies import ReplyReceived
from shared.privacy.cipher import is_personal
from shared.privacy.codec import PersonalData
from shared.secrets import SecretBox, generate_key
from tests.integration.privacy.test_rewrite_streams import (
    ADDRESS,
    BODY,
    GROUP,
    NUMBER,
    SITE,
    _audit_caught_up,
    _audit_has,
    _event,
    _migrated,
    _publish_old_events,
    _raw,
    _rewrite_record,
    _trail_hashes,
)
from tests.support.waiting import wait_until


async def test_a_waiting_outbox_message_is_sealed_and_its_gateway_consumer_kept(
    nc: Client, tmp_path: Path
) -> None:
    """OUTBOX is a work queue: what a stopped gateway has not taken yet is rewritten too, and
    the gateway's durable consumer is there afterwards, as the gateway declares it."""
    from shared.bus.topology import OUTBOX, ensure_consumer
    from shared.events.schemas.messages import MessageAccepted

    js = nc.jetstream()
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    await ensure_consumer(js, "sms-outbox")
    message = MessageAccepted(
        message_id="m-out",
        group_id=GROUP,
        site_id=SITE,
        channel="sms",
        to=NUMBER,
        body=BODY,
        submitted_at=datetime.now(UTC),
    )
    headers, body = encode(_event(message, "m-out", datetime.now(UTC)))
    await js.publish(subjects.outbox("sms", SITE), body, headers=headers)
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    await _migrated(engine)
    done = await rewrite(nc, personal, Trail(engine, session_factory(engine)), actor="t")
    await engine.dispose()
    assert done["sealed"]["OUTBOX"] == 1
    # The gateway, starting afterwards, declares its consumer again: the same one, no conflict.
    await ensure_consumer(js, "sms-outbox")
    assert [c.name for c in await js.consumers_info(OUTBOX)] == ["sms-outbox"]
    sub = await js.pull_subscribe_bind(durable="sms-outbox", stream=OUTBOX)
    [msg] = await sub.fetch(1, timeout=10)
    taken = decode(msg.headers, msg.data)
    assert isinstance(taken.data, MessageAccepted) and is_personal(taken.data.body)
    opened = await personal.open_message(taken.data)
    assert (opened.to, opened.body) == (NUMBER, BODY)
    assert taken.data.recipient_tag == personal.tag(GROUP, NUMBER)
    await msg.ack_sync()
    await sub.unsubscribe()


async def test_audit_copies_of_expired_events_are_kept_sealed(nc: Client, tmp_path: Path) -> None:
    """An event its own stream no longer holds (past max_age) keeps its AUDIT copy and its
    record in the rebuilt trail, sealed, in front, with the origin it had."""
    from shared.bus.orphans import ORIGINAL_SOURCE, ORPHANS
    from shared.bus.restream import stored_messages

    js = nc.jetstream()
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    await _publish_old_events(nc)
    await wait_until(lambda: _audit_has(nc, 8), timeout=30, message="AUDIT copied")
    # DISPATCH's first event (m-1 queued, to the address) expires; AUDIT keeps its copy.
    expired_id = (await js.get_msg(DISPATCH, 3)).headers["ce-id"]  # type: ignore[index]
    await js.delete_msg(DISPATCH, 2)
    await js.delete_msg(DISPATCH, 3)
    found = await survey(nc)
    assert found.audit_orphans == 2 and not found.problems
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")
    await _migrated(engine)
    trail = Trail(engine, session_factory(engine))
    done = await rewrite(nc, personal, trail, actor="t")
    assert done["audit"]["messages_after"] == 9  # 8 copies kept, and the rewrite's record
    assert ORPHANS not in {i.config.name for i in await js.streams_info()}
    copies = [m async for m in stored_messages(nc, AUDIT)]
    assert [m.headers["ce-id"] for m in copies[:2] if m.headers][1] == expired_id
    kept = copies[1]
    assert (kept.headers or {})[ORIGINAL_SOURCE].startswith("DISPATCH 3 ")
    assert ADDRESS.encode() not in kept.data
    queued = decode(kept.headers, kept.data)
    assert isinstance(queued.data, MessageQueued)
    assert await personal.open(GROUP, queued.data.to) == ADDRESS
    assert not (await survey(nc)).audit_clear
    assert (await verify(trail.db)).ok
    assert len(await _trail_hashes(f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}")) == 9

    # A later rewrite (an old-version producer wrote once more in clear) keeps them again,
    # with the origin they had in the first place.
    late = ReplyReceived.model_validate(
        {**queued.data.model_dump(), "from_number": NUMBER, "body": BODY}
        | {"provider": "sim", "provider_inbound_id": "late", "to": "+61400000000"}
        | {"received_at": datetime.now(UTC), "kind": "unmatched"}
    )
    headers, body = encode(_event(late, "late", datetime.now(UTC)))
    await js.publish(subjects.replies(SITE), body, headers=headers)
    await wait_until(lambda: _audit_has(nc, 10), timeout=30, message="AUDIT copied the reply")
    again = await rewrite(nc, personal, trail, actor="t")
    assert again["sealed"]["INBOUND"] == 1
    copies = [m async for m in stored_messages(nc, AUDIT)]
    kept = next(m for m in copies if (m.headers or {}).get("ce-id") == expired_id)
    assert (kept.headers or {})[ORIGINAL_SOURCE].startswith("DISPATCH 3 ")
    assert kept.subject.count("_stagger.orphans") == 1
    assert (await verify(trail.db)).ok
    await engine.dispose()


async def test_an_interrupted_rewrite_resumes_from_its_copy(nc: Client) -> None:
    """Stopped after the stream was deleted: the copy is complete, a new run restores from it."""
    from shared.bus.restream import TEMP_PREFIX, _copy_out, rewrite_stream
    from shared.bus.topology import STREAMS_BY_NAME
    from shared.privacy.reseal import Resealer

    js = nc.jetstream()
    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    await _publish_old_events(nc)
    state = (await js.stream_info(DISPATCH)).state
    resealer = Resealer(personal, set())
    await _copy_out(nc, DISPATCH, TEMP_PREFIX + DISPATCH, resealer)
    await js.delete_stream(DISPATCH)  # ...and the process died here
    done = await rewrite_stream(nc, STREAMS_BY_NAME[DISPATCH], resealer)
    assert (done.changed, done.messages) == (3, state.messages)
    after = (await js.stream_info(DISPATCH)).state
    assert (after.first_seq, after.last_seq, after.messages) == (
        state.first_seq,
        state.last_seq,
        state.messages,
    )
    assert TEMP_PREFIX + DISPATCH not in {i.config.name for i in await js.streams_info()}
    queued = decode(*await _raw(js, DISPATCH, 3))
    assert isinstance(queued.data, MessageQueued)
    assert await personal.open(GROUP, queued.data.to) == ADDRESS


async def test_the_command_rewrites_and_the_trail_verifies_on_either_database(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    """Through `stagger privacy rewrite-streams` itself (a process of its own, configured like
    the services), with the trail on SQLite and on PostgreSQL."""
    import subprocess
    import sys

    key = generate_key()
    personal = PersonalData(nc, SecretBox([key.encode()]))
    await _publish_old_events(nc)
    await wait_until(lambda: _audit_has(nc, 8), timeout=30, message="AUDIT copied")
    await _audit_caught_up(nats_url, database_url, tmp_path, nc)
    env = {
        **os.environ,
        "STAGGER_NATS_URL": nats_url,
        "STAGGER_DATABASE_URL": database_url,
        "STAGGER_SECRET_KEY": key,
        "STAGGER_VAR_DIR": str(tmp_path),
    }
    command = [sys.executable, "-m", "services.cli.main", "privacy", "rewrite-streams"]

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*command, *args], env=env, capture_output=True, text=True, check=False, timeout=300
        )

    dry = run()
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["streams"]["DISPATCH"]["to_seal"] == 3
    assert (await survey(nc)).counts[DISPATCH] == (6, 3)  # the dry run changed nothing
    applied = run("--apply", "--actor", "cli:auditor-test")
    assert applied.returncode == 0, applied.stderr
    assert json.loads(applied.stdout)["sealed"]["INBOUND"] == 1
    reply = decode(*await _raw(nc.jetstream(), INBOUND, 1))
    assert isinstance(reply.data, ReplyReceived)
    assert await personal.open(GROUP, reply.data.body) == BODY
    engine = create_engine(database_url)
    trail = Trail(engine, session_factory(engine))
    try:
        assert (await verify(trail.db)).ok
        record = await _rewrite_record(trail)
        assert record.rewritten_by == "cli:auditor-test"
    finally:
        await engine.dispose()
    rebuilt = f"sqlite+aiosqlite:///{tmp_path / 'rebuilt.db'}"
    await _audit_caught_up(nats_url, rebuilt, tmp_path / "r", nc)
    assert await _trail_hashes(rebuilt) == await _trail_hashes(database_url)
    assert (await survey(nc)).nothing_to_do


async def test_a_rewrite_stopped_before_the_trail_was_rebuilt_finishes_on_the_next_run(
    nc: Client, nats_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The streams are sealed and AUDIT created again, then the process dies: the next run
    (which finds nothing left in clear) still rebuilds the trail, with one record only."""
    import services.cli.rewrite_streams as command

    personal = PersonalData(nc, SecretBox([generate_key().encode()]))
    await _publish_old_events(nc)
    await wait_until(lambda: _audit_has(nc, 8), timeout=30, message="AUDIT copied")
    url = f"sqlite+aiosqlite:///{tmp_path / 'audit.db'}"
    await _audit_caught_up(nats_url, url, tmp_path, nc)
    old = await _trail_hashes(url)
    engine = create_engine(url)
    trail = Trail(engine, session_factory(engine))
    mapping = tmp_path / "hashes.jsonl"

    async def dies(engine: object) -> None:
        raise RuntimeError("killed")

    monkeypatch.setattr(command, "empty_trail", dies)
    with pytest.raises(RuntimeError, match="killed"):
        await rewrite(nc, personal, trail, actor="t", mapping=mapping)
    monkeypatch.undo()
    assert (await survey(nc)).nothing_to_do  # the streams are done...
    done = await rewrite(nc, personal, trail, actor="t", mapping=mapping)  # ...the trail not
    assert done["nothing_to_do"] is False and done["sealed"]["DISPATCH"] == 3
    assert (await verify(trail.db)).ok
    record = await _rewrite_record(trail)  # exactly one (scalar_one)
    assert record.old_records == len(old)
    lines = [json.loads(x) for x in mapping.read_text().splitlines()]
    assert sum(1 for x in lines if x["old_hash"]) == len(old)
    assert (await rewrite(nc, personal, trail, actor="t"))["nothing_to_do"] is True
    await engine.dispose()
