"""The alert projection, the batch-late check and the notifier on SQLite (and a real NATS and
aiosmtpd sink for the notifier): transitions queued once, stale history not emailed, a
refused email tried again without emailing anyone twice."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from nats.aio.client import Client
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters import alert_tables, batch_tables  # noqa: F401  (the tables)
from services.config.adapters.alert_mail import AlertMailer
from services.config.adapters.alert_tables import alert_outbox, alert_states
from services.config.adapters.alerts import AlertProjection, AlertStore
from services.config.adapters.batch_tables import batch_messages
from services.config.adapters.batches import BatchStore
from services.config.adapters.read_model import metadata
from services.config.config import AlertConfig
from services.config.domain.aggregates import SiteState
from services.config.handlers.alert_batches import BatchLateWatcher
from services.config.handlers.alert_dead_letters import DeadLetterQuiet
from services.config.handlers.alerts import AlertNotifier
from services.config.handlers.batch_commands import BatchCommands
from services.config.staff.tables import metadata as staff_metadata
from services.config.staff.tables import users
from shared.bus.topology import ALERTS, DEADLETTER, PROVIDERS
from shared.db.engine import create_engine, session_factory
from shared.domain.site_settings import SiteSettings
from shared.events.envelope import Envelope, EventData, make_event
from shared.events.schemas.deadletter import DeadLetterRecorded
from shared.events.schemas.inbound_email import EmailAccountStatus
from shared.events.schemas.providers import SendingHeld, SendingResumed
from shared.net.outbound import OutboundGuard
from shared.runtime.nats_server import free_port
from shared.secrets import SecretBox, generate_key
from tests.integration.sms_gateway.harness import events as stream_events
from tests.support.smtp import smtp_servers  # noqa: F401  (fixture)

GROUP = "g-alerts"


async def database(tmp_path: Path) -> async_sessionmaker[AsyncSession]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'config.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
        await connection.run_sync(staff_metadata.create_all)
    return session_factory(engine)


def credit_event(data: EventData, at: datetime | None = None) -> Envelope:
    return make_event(
        data, source="sms_gateway", actor="service:sms_gateway", group_id=GROUP, time=at
    )


HELD = SendingHeld(account="acct-1", provider="simulator", reason="no credits left")
RESUMED = SendingResumed(account="acct-1", provider="simulator", balance=100)


async def apply(
    db: async_sessionmaker[AsyncSession], projection: AlertProjection, events: list[Envelope]
) -> None:
    async with db() as session, session.begin():
        await projection.apply(session, events)


async def outbox(db: async_sessionmaker[AsyncSession]) -> list[Any]:
    async with db() as session:
        rows = await session.execute(sa.select(alert_outbox).order_by(alert_outbox.c.created_at))
        return list(rows)


async def test_holds_and_resumes_queue_one_raised_and_one_cleared(tmp_path: Path) -> None:
    db = await database(tmp_path)
    projection = AlertProjection(PROVIDERS)
    # Three holds (replicas, refused sends) and two resumes, in two batches.
    await apply(db, projection, [credit_event(HELD), credit_event(HELD)])
    await apply(db, projection, [credit_event(HELD), credit_event(RESUMED), credit_event(RESUMED)])
    rows = await outbox(db)
    assert [r.transition for r in rows] == ["raised", "cleared"]
    assert rows[0].alert_id == rows[1].alert_id and rows[0].kind == "sms_held"
    assert await AlertStore(db).active(GROUP) == []


async def test_an_email_account_that_cannot_sign_in_raises_until_it_signs_in_again(
    tmp_path: Path,
) -> None:
    db = await database(tmp_path)

    def status(ok: bool, stage: str, error: str | None = None) -> Envelope:
        data = EmailAccountStatus(
            account="mail-1",
            group_id=GROUP,
            site_id="s-1",
            ok=ok,
            stage=stage,  # type: ignore[arg-type]
            error=error,
            checked_at=datetime.now(UTC),
        )
        return make_event(data, source="email_gateway", actor="service:email_gateway")

    projection = AlertProjection(PROVIDERS)
    refused = "535 5.7.8 authentication failed for password=Sup3rSecret"
    await apply(db, projection, [status(False, "login", refused), status(False, "login", refused)])
    await apply(db, projection, [status(False, "tls", "handshake"), status(True, "send")])
    rows = await outbox(db)
    assert [(r.transition, r.kind, r.key) for r in rows] == [
        ("raised", "email_sign_in", "mail-1"),
        ("cleared", "email_sign_in", "mail-1"),
    ]
    assert "535 5.7.8" in rows[0].summary and "Sup3rSecret" not in rows[0].summary


async def test_history_older_than_a_day_sets_the_state_but_emails_nobody(tmp_path: Path) -> None:
    db = await database(tmp_path)
    old = datetime.now(UTC) - timedelta(days=3)
    await apply(db, AlertProjection(PROVIDERS), [credit_event(HELD, old)])
    assert await outbox(db) == []
    [active] = await AlertStore(db).active(GROUP)
    assert active["kind"] == "sms_held" and "no credits left" in active["summary"]


def dead_letter(
    consumer: str, n: int, group: str | None = GROUP, at: datetime | None = None
) -> Envelope:
    headers = {"ce-groupid": group, "ce-siteid": "s-1"} if group else {}
    data = DeadLetterRecorded(
        consumer=consumer,
        reason=f"undecodable #{n}: token=abc{n}",
        subject="outbox.sms.s-1",
        body="{}",
        body_encoding="utf-8",
        headers=headers,
    )
    return make_event(data, source="consumer/x", actor="service:x", time=at)


async def test_dead_letters_of_a_groups_messages_raise_one_alert_per_consumer(
    tmp_path: Path,
) -> None:
    db = await database(tmp_path)
    projection = AlertProjection(DEADLETTER)
    await apply(db, projection, [dead_letter("sms-outbox", n) for n in range(5)])
    await apply(
        db, projection, [dead_letter("email-outbox", 1), dead_letter("sms-outbox", 9, None)]
    )
    rows = await outbox(db)
    assert sorted((r.kind, r.key) for r in rows) == [
        ("dead_letters", "email-outbox"),
        ("dead_letters", "sms-outbox"),
    ]
    assert all(r.group_id == GROUP and r.site_id == "s-1" for r in rows)
    assert not any("abc" in r.summary for r in rows)


async def test_a_dead_letter_alert_clears_once_its_consumer_has_been_quiet(
    tmp_path: Path,
) -> None:
    db = await database(tmp_path)
    projection = AlertProjection(DEADLETTER)
    alerts = AlertStore(db)
    quiet = DeadLetterQuiet(alerts, timedelta(hours=24))
    first = datetime.now(UTC) - timedelta(hours=2)
    newest = first + timedelta(hours=1)
    await apply(db, projection, [dead_letter("sms-outbox", 1, at=first)])
    await apply(db, projection, [dead_letter("sms-outbox", 2, at=newest)])
    # A day after the first dead letter, but not after the newest: still raised.
    assert await quiet.check(first + timedelta(hours=24, minutes=30)) is False
    assert [a["kind"] for a in await alerts.active(GROUP)] == ["dead_letters"]
    assert await quiet.check(newest + timedelta(hours=24, seconds=1)) is True
    assert await quiet.check(newest + timedelta(hours=48)) is False  # told once
    assert await alerts.active(GROUP) == []
    raised, cleared = await outbox(db)
    assert (raised.transition, cleared.transition) == ("raised", "cleared")
    assert cleared.alert_id == raised.alert_id and cleared.key == "sms-outbox"
    assert cleared.site_id == "s-1" and "for 24 hours" in cleared.summary
    # The next dead letter is news again: a new alert.
    await apply(db, projection, [dead_letter("sms-outbox", 3)])
    rows = await outbox(db)
    assert [r.transition for r in rows] == ["raised", "cleared", "raised"]
    assert rows[2].alert_id != raised.alert_id


class Sites:
    def __init__(self, site: SiteState) -> None:
        self.site_state = site

    async def site(self, site_id: str) -> SiteState | None:
        return self.site_state if site_id == self.site_state.site_id else None


async def test_a_batch_that_will_not_fit_raises_once_and_clears_when_it_is_done(
    tmp_path: Path,
) -> None:
    db = await database(tmp_path)
    settings = SiteSettings.model_validate(
        {
            "profile": {"name": "High Street", "timezone": "Europe/London"},
            # One an hour, 8 hours a weekday, warn after a day: 200 messages cannot fit.
            "sms": {
                "mode": "staggered",
                "every_minutes": 60,
                "warn_after_days": 1,
                "sessions": [
                    {"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "17:00"}
                ],
            },
        }
    )
    site = SiteState(GROUP, "s-high", {}, settings, 1, 1)
    batches = BatchStore(db)
    ids = [f"m-{n}" for n in range(200)]
    await batches.record(
        batch_id="b-1", group_id=GROUP, site_id="s-high", channel="sms", message_ids=ids, actor="t"
    )
    alerts = AlertStore(db)
    watcher = BatchLateWatcher(alerts, BatchCommands(None, batches), Sites(site))  # type: ignore[arg-type]
    assert await watcher.check() is True
    assert await watcher.check() is False  # already raised: nobody is told again
    [active] = await alerts.active(GROUP)
    assert active["kind"] == "batch_late" and active["site_id"] == "s-high"
    assert "High Street" in active["summary"] and "200" in active["summary"]
    async with db() as session, session.begin():
        await session.execute(sa.update(batch_messages).values(state="sent"))
    assert await watcher.check() is True
    assert await watcher.check() is False
    rows = await outbox(db)
    assert [(r.transition, r.kind, r.key) for r in rows] == [
        ("raised", "batch_late", "b-1"),
        ("cleared", "batch_late", "b-1"),
    ]


async def add_admin(db: async_sessionmaker[AsyncSession], email: str, **extra: str) -> None:
    now = datetime.now(UTC)
    values = {
        "user_id": email.split("@")[0][:32],
        "group_id": GROUP,
        "email": email,
        "name": "",
        "role": "group_admin",
        "sites": [],
        "status": "active",
        "created_at": now,
        "updated_at": now,
        **extra,
    }
    async with db() as session, session.begin():
        await session.execute(sa.insert(users).values(**values))


async def test_a_refused_email_is_tried_again_and_nobody_is_emailed_twice(
    tmp_path: Path,
    nc: Client,
    smtp_servers: Any,  # noqa: F811
) -> None:
    db = await database(tmp_path)
    await add_admin(db, "ann@example.org")
    await add_admin(db, "bob@example.org")
    await add_admin(db, "cat@example.org", role="site_manager")
    await add_admin(db, "dan@example.org", status="disabled")
    projection = AlertProjection(PROVIDERS)
    await apply(db, projection, [credit_event(HELD)])
    store = AlertStore(db)
    box = SecretBox([generate_key().encode()])
    guard = OutboundGuard.parse(None)
    clock = itertools.count(0.0, 1.0)

    async def no_group(group_id: str) -> None:
        return None

    def notifier(port: int) -> AlertNotifier:
        config = AlertConfig(smtp_host="127.0.0.1", smtp_port=port, retry_seconds=10)
        mailer = AlertMailer(config, box, guard)
        return AlertNotifier(nc, store, mailer, no_group, "http://x/console/dashboard", [], 10)

    # Nothing listens on this port: the event is published, the email waits.
    down = notifier(free_port())
    await down.once(next(clock))
    [row] = await outbox(db)
    assert row.published_at is not None and row.emailed_at is None
    sink = smtp_servers()
    up = notifier(sink.port)
    up._blocked_until = down._blocked_until  # the same replica's back-off, as after a refusal
    await up.once(next(clock))  # still inside the back-off: nothing sent
    assert sink.parsed() == []
    await up.once(next(clock) + 10)
    await up.once(next(clock) + 10)  # done: nothing more to send
    assert sorted(str(m["To"]) for m in sink.parsed()) == ["ann@example.org", "bob@example.org"]
    published = await stream_events(nc, ALERTS)
    assert len(published) == 1 and published[0].data.condition == "sms_held"  # type: ignore[attr-defined]
    async with db() as session:
        state = (await session.execute(sa.select(alert_states))).one()
    assert state.active is True
