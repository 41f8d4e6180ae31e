"""Fuzzing the audit trail with garbage in a stream it sources (DISPATCH).

The audit trail's documented behaviour differs from the other consumers: it records what was
written, not what it understood. A message with CloudEvents headers becomes a record whatever
its body (values too long for a column are cut, NUL replaced; the stream keeps the bytes); a
message without them is not an event and is left out of the trail (it stays in the AUDIT
stream). Nothing is dead-lettered. What must hold: the audit service keeps running, both of its
projections move past the storm, the hash chains still verify, and a valid event afterwards
reaches the trail and the message-status view.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from nats.aio.client import Client

from services.audit.adapters.trail import messages as status_rows
from services.audit.adapters.trail import records
from services.audit.composition import AuditService
from services.audit.handlers import queries
from shared.bus import subjects
from shared.bus.topology import DISPATCH
from shared.events.schemas.dispatch import MessageQueued
from tests.integration.hardening.fuzzing import (
    EXAMPLES,
    DeadLetters,
    examples,
    in_thread,
    service_running,
    service_settings,
)
from tests.integration.hardening.malformed import Malformed, headers_of, malformed
from tests.support.waiting import wait_until

GROUP, SITE = "g-audit", "site-audit"


def queued(message_id: str) -> MessageQueued:
    return MessageQueued(
        message_id=message_id,
        group_id=GROUP,
        site_id=SITE,
        channel="sms",
        to="+447700900001",
        submitted_at=datetime.now(UTC),
    )


def hostile_headers() -> list[Malformed]:
    """Valid CloudEvents shapes with attribute values no column expects."""
    headers, body = headers_of(queued("m-hostile"), subject="m-hostile", group_id=GROUP)
    long_text = "x" * 5000
    return [
        Malformed("long_time", {**headers, "ce-time": "2030-01-01T00:00:00" + "0" * 80}, body, ""),
        Malformed("naive_time", {**headers, "ce-time": "2030-01-01T00:00:00"}, body, ""),
        Malformed("long_id", {**headers, "ce-id": long_text}, body, ""),
        Malformed("long_id_twin", {**headers, "ce-id": long_text + "y"}, body, ""),
        Malformed("long_subject", {**headers, "ce-subject": long_text}, body, ""),
        Malformed("long_group", {**headers, "ce-groupid": long_text}, body, ""),
        Malformed(
            "long_source_actor",
            {**headers, "ce-source": long_text, "ce-actor": long_text},
            body,
            "",
        ),
        Malformed(
            "huge_version", {**headers, "ce-type": "stagger.dispatch.queued.v" + "9" * 30}, body, ""
        ),
        Malformed("nul_body", headers, b'{"to": "\x00", "reason": "\x00"}', ""),
        Malformed("nul_in_fields", headers, body.replace(b"+447700900001", b"+44\\u0000"), ""),
        Malformed(
            "wrong_typed_fields",
            headers,
            b'{"channel": {"a": 1}, "to": ["x"], "attempts": "many", "category": "'
            + b"c" * 500
            + b'"}',
            "",
        ),
    ]


async def test_garbage_in_dispatch_never_stops_the_audit_trail(
    nc: Client, nats_url: str, database_url: str, tmp_path: Path
) -> None:
    strategy = malformed(queued("m-fuzz"), attributes={"subject": "m-fuzz", "group_id": GROUP})
    found = await in_thread(lambda: examples(strategy, EXAMPLES, "audit"))
    found += hostile_headers()
    subject = subjects.dispatch("sms", SITE)
    settings = service_settings(nats_url, tmp_path / "var", database_url)
    js = nc.jetstream()
    async with (
        DeadLetters(nc).listening() as letters,
        service_running(AuditService(), settings) as ctx,
    ):
        published: list[tuple[int, Malformed]] = []
        for index, example in enumerate(found):
            headers = example.headers
            if headers and "ce-id" in headers and not example.kind.startswith("long_id"):
                # One id each: the trail keeps the first of events sharing an id (a republish).
                headers = {**headers, "ce-id": f"fuzz-{index}"}
            ack = await js.publish(subject, example.body, headers=headers)
            published.append((ack.seq, example))
        # A valid event after the storm reaches the trail and the status view.
        headers, body = headers_of(
            queued("m-after"), subject="m-after", group_id=GROUP, site_id=SITE
        )
        after = await js.publish(subject, body, headers=headers)
        await wait_until(
            lambda: _recorded(ctx, after.seq), timeout=60, message="the valid event recorded"
        )
        await wait_until(
            lambda: _status(ctx, "m-after"), timeout=30, message="the valid event folded"
        )
        recorded = await _origins(ctx)
        for sequence, example in published:
            is_event = bool(example.headers and "ce-type" in example.headers)
            assert (sequence in recorded) == is_event, (
                f"{example!r}: {'not ' if is_event else ''}recorded in the trail"
            )
        verified = await queries.verify(ctx.db)
        assert verified.ok, verified.problems[:5]
        assert verified.records == len(recorded)
    assert letters.of("audit.trail") == [] and letters.of("audit.message_status") == []


async def _recorded(ctx: Any, sequence: int) -> bool:
    return sequence in await _origins(ctx)


async def _origins(ctx: Any) -> set[int]:
    async with ctx.db() as session:
        rows = await session.execute(
            sa.select(records.c.origin_sequence).where(records.c.origin_stream == DISPATCH)
        )
        return {r[0] for r in rows}


async def _status(ctx: Any, message_id: str) -> bool:
    async with ctx.db() as session:
        row = (
            await session.execute(
                sa.select(status_rows.c.state).where(status_rows.c.message_id == message_id)
            )
        ).first()
    return row is not None and row.state == "queued"
