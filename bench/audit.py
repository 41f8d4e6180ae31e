"""Audit benchmark.

- audit.rebuild: rebuild the audit trail (records hash-chained per group, message read model)
  from an AUDIT stream of 100,000 events into an empty SQLite database, events/s, beside a raw
  nats-py ordered read of the same stream in the same run.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import nats
from nats.aio.client import Client
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

from bench.harness import Result, alternate, rate
from services.audit.adapters.trail import AuditProjection
from shared.bus import subjects
from shared.bus.headers import use_fast_headers
from shared.bus.publisher import Outgoing, publisher_for
from shared.bus.topology import AUDIT, ensure_streams
from shared.db.engine import create_engine, session_factory
from shared.db.migrate import migrate, service_chain
from shared.db.projection import ProjectionRunner
from shared.dispatch.pending_events import event_id
from shared.events.codec import encode
from shared.events.envelope import make_event
from shared.events.schemas.dispatch import MessageQueued, MessageSent, Release

MIGRATIONS = Path(__file__).resolve().parents[1] / "services" / "audit" / "migrations"


async def fill(nc: Client, total: int) -> None:
    """`total` dispatch events for 20 sites in 4 groups: each message queued, then sent."""
    now = datetime.now(UTC)
    release = Release(tick_id="t" * 32, scheduled_at=now, reason="staggered SMS: 1 every 3 min")
    batch: list[Outgoing] = []
    for n in range(total // 2):
        site, group = f"site-{n % 20}", f"group-{n % 4}"
        mid = f"{n:08d}-0000-7000-8000-000000000000"
        common = {"message_id": mid, "group_id": group, "site_id": site, "channel": "sms"}
        for what, data in (
            (
                "queued",
                MessageQueued(
                    **common, to=f"+4477009{n % 100000:05d}", category="recall", submitted_at=now
                ),
            ),
            (
                "terminal",
                MessageSent(
                    **common,
                    account="sms-acct",
                    sent_at=now,
                    provider_message_id=f"sim-{n}",
                    released_by=release,
                ),
            ),
        ):
            event = make_event(
                data,
                source="sms_gateway",
                actor="service:sms_gateway",
                subject=mid,
                group_id=group,
                site_id=site,
                event_id=event_id(mid, what),
            )
            headers, body = encode(event)
            batch.append(Outgoing(subjects.dispatch("sms", site), body, headers))
        if len(batch) >= 10_000:
            await publisher_for(nc).publish_all(batch)
            batch = []
    if batch:
        await publisher_for(nc).publish_all(batch)
    js = nc.jetstream()
    while (await js.stream_info(AUDIT)).state.messages < total:
        await asyncio.sleep(0.2)


async def audit_rebuild(nats_url: str, total: int = 100_000) -> list[Result]:
    nc = await nats.connect(nats_url)
    js = nc.jetstream()
    await ensure_streams(js)
    await fill(nc, total)
    # The service's own connection setup (its header parser) for the rebuild; the baseline
    # reads on a plain nats-py connection.
    reader = await nats.connect(nats_url)
    use_fast_headers(reader)
    workdir = Path(tempfile.mkdtemp())
    counter = 0

    async def project() -> float:
        nonlocal counter
        counter += 1
        engine = create_engine(f"sqlite+aiosqlite:///{workdir / f'audit-{counter}.db'}")
        await migrate(engine, [service_chain("audit", MIGRATIONS)])
        runner = ProjectionRunner(
            reader, session_factory(engine), AuditProjection(), batch_size=5000
        )
        started = time.perf_counter()
        stats = await runner.catch_up()
        value = rate(total, started)
        assert stats.applied == total, stats
        await engine.dispose()
        return value

    async def baseline() -> float:
        count = 0
        done = asyncio.Event()

        async def cb(msg: object) -> None:
            nonlocal count
            count += 1
            if count == total:
                done.set()

        started = time.perf_counter()
        sub = await js.subscribe(
            ">",
            stream=AUDIT,
            ordered_consumer=True,
            cb=cb,
            pending_msgs_limit=32768,
            config=ConsumerConfig(
                ack_policy=AckPolicy.NONE, mem_storage=True, deliver_policy=DeliverPolicy.ALL
            ),
        )
        await done.wait()
        value = rate(total, started)
        await sub.unsubscribe()
        return value

    try:
        ours, raw, _, _ = await alternate(project, baseline, rounds=3)
    finally:
        await reader.close()
        await nc.close()
    return [
        Result(
            "audit.rebuild",
            "events/s",
            ours,
            raw,
            notes=f"{total} events (queued+sent for {total // 2} messages, 20 sites, 4 groups) "
            "rebuilt into an empty SQLite trail by the service's projection runner (batches of "
            "5,000 committed by its writer process): hash chain per group, message read model, "
            "position in the same transaction, read on a connection with Stagger's header parser; "
            "baseline: nats-py ordered consumer (its own header parser) reading the same AUDIT "
            "stream",
        )
    ]


async def run(nats_url: str) -> list[Result]:
    """The audit rebuild benchmark."""
    print("   audit_rebuild …", flush=True)
    return await audit_rebuild(nats_url)
