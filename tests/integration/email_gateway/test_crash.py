"""SIGKILL of a gateway replica in the middle of 2,000 emails: every email arrives exactly once
(counted by Message-ID at the SMTP server) and every message ends in exactly one terminal event.

Real processes throughout: two gateway replicas sharing one database (SQLite in WAL mode, or
PostgreSQL), the SMTP sink as its own process filing each accepted message in the account's
Sent folder in dovecot before answering (as Microsoft 365 and Gmail do), and a 50 ms reply
delay so that a kill lands while messages are accepted but not yet acknowledged.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from services.email_gateway.adapters import tables
from shared.db.engine import create_engine
from shared.dispatch import schema
from tests.integration.email_gateway.conftest import EmailHarness, email_settings, imap_settings
from tests.support.imap import Dovecot
from tests.support.processes import ServiceProcess, service_env, start_service
from tests.support.smtp import start_sink_process
from tests.support.waiting import wait_until

TOTAL = 2000
SENT = "Sent Items"


async def _count_states(engine: sa.ext.asyncio.AsyncEngine) -> Counter[str]:
    m = tables.DISPATCH.messages
    async with engine.connect() as conn:
        rows = await conn.execute(sa.select(m.c.state, sa.func.count()).group_by(m.c.state))
        return Counter({r[0]: r[1] for r in rows})


async def _owners(engine: sa.ext.asyncio.AsyncEngine) -> Counter[str]:
    m = tables.DISPATCH.messages
    async with engine.connect() as conn:
        rows = await conn.execute(
            sa.select(m.c.lease_owner, sa.func.count())
            .where(m.c.state == schema.SENDING)
            .group_by(m.c.lease_owner)
        )
        return Counter({r[0]: r[1] for r in rows})


@pytest.mark.slow
async def test_sigkill_mid_batch_every_email_arrives_exactly_once(
    email: EmailHarness, dovecot: Dovecot, database_url: str, tmp_path: Path
) -> None:
    user, _ = dovecot.add_user()
    dovecot.create(user, SENT)
    sink = start_sink_process(
        tmp_path / "sink",
        STAGGER_SMTP_SINK_SENT_IMAP_URL=dovecot.sent_url(user, SENT),
        STAGGER_SMTP_SINK_REPLY_DELAY_SECONDS="0.05",
        STAGGER_SMTP_SINK_STORE="false",
    )
    imap = imap_settings(dovecot, user, enabled=False)  # used to reconcile, not to receive
    site = await email.make_site(email_settings(sink.port, mode="manual", imap=imap))
    gateways: dict[str, ServiceProcess] = {}
    db = create_engine(database_url)
    try:

        def replica(name: str) -> ServiceProcess:
            env = service_env(
                email.nats_url,
                tmp_path / "var",
                database_url,
                extra={
                    "STAGGER_SECRET_KEY": email.key,
                    "STAGGER_INSTANCE_ID": name,
                    "STAGGER_EMAIL_GATEWAY_LEASE_SECONDS": "3",
                    "STAGGER_EMAIL_GATEWAY_RECOVERY_SECONDS": "0.5",
                    "STAGGER_EMAIL_GATEWAY_RETRY_BASE_SECONDS": "0.5",
                    "STAGGER_EMAIL_GATEWAY_RETRY_CAP_SECONDS": "2",
                    "STAGGER_EMAIL_GATEWAY_RECONCILE_GRACE_SECONDS": "0.5",
                    "STAGGER_EMAIL_GATEWAY_LOCAL_HOSTNAME": "gateway.test",
                },
            )
            return start_service("email_gateway", env)

        gateways["gw-a"] = replica("gw-a")
        gateways["gw-b"] = replica("gw-b")
        ids = await email.submit(site, TOTAL)

        async def all_queued() -> bool:
            return (await _count_states(db))["queued"] == TOTAL

        await wait_until(all_queued, timeout=90, interval=0.5, message="2,000 queued")
        await email.tick(site, TOTAL, manual=True, reason="send-now by test:staff")

        await wait_until(
            lambda: len(sink.journal()) >= TOTAL // 3,
            timeout=120,
            interval=0.05,
            message="a third delivered",
        )
        owners = await _owners(db)
        assert owners, "a replica is in the middle of sending"
        victim_owner = owners.most_common(1)[0][0]
        victim = victim_owner.split("/", 1)[0]
        gateways[victim].kill()  # SIGKILL: no drain, no goodbye
        at_kill = len(sink.journal())
        in_flight = sum((await _owners(db)).values())
        assert 0 < at_kill < TOTAL and in_flight > 0

        # The survivor reconciles the dead replica's messages once their leases run out; the
        # operator presses send-now again for what is left; the killed replica comes back.
        survivor = next(name for name in gateways if name != victim)
        gateways[victim] = replica(victim)
        deadline = time.monotonic() + 300
        while True:
            states = await _count_states(db)
            if states["sent"] == TOTAL:
                break
            assert time.monotonic() < deadline, f"stuck at {states}"
            if states["queued"]:
                await email.tick(site, TOTAL, manual=True, reason="send-now again")
            await asyncio.sleep(1.0)  # an operator's patience between presses, not a condition
        assert gateways[survivor].process is not None
    finally:
        for process in gateways.values():
            process.stop()
        sink.stop()
        await db.dispose()

    # Exactly once at the server, counted by Message-ID.
    arrived = sink.message_ids()
    expected = {f"<{i}@smile.example>" for i in ids}
    assert set(arrived) == expected
    duplicates = {k: v for k, v in arrived.items() if v != 1}
    assert duplicates == {}, f"sent twice: {list(duplicates)[:5]}"
    assert dovecot.count(user, SENT) == TOTAL

    # Exactly one terminal event per message, every one `sent`.
    async def all_recorded() -> bool:
        return len(await email.terminal()) == TOTAL

    await wait_until(all_recorded, timeout=60, interval=1.0, message="2,000 terminal events")
    events = await email.events("DISPATCH")
    terminal = Counter(
        e.data.message_id
        for e in events
        if e.type.startswith("stagger.dispatch.")
        and e.type
        in {
            "stagger.dispatch.sent",
            "stagger.dispatch.failed",
            "stagger.dispatch.suppressed",
            "stagger.dispatch.cancelled",
            "stagger.dispatch.expired",
        }
    )
    assert set(terminal) == set(ids) and set(terminal.values()) == {1}
    sent = [e for e in events if e.type == "stagger.dispatch.sent"]
    assert len(sent) == TOTAL
    reconciled = [e for e in sent if e.data.reconciled]
    assert reconciled, "the kill caught messages accepted but not yet recorded"
    print(
        f"killed {victim} after {at_kill} deliveries with {in_flight} messages leased; "
        f"{len(reconciled)} settled from the Sent folder"
    )
