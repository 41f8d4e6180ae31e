"""The batch read model on SQLite: counts by state from DISPATCH events, one site's messages
per batch (a producer naming another site's batch id adds nothing to it), sends per hour."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from services.config.adapters import batch_tables  # noqa: F401  (registers the tables)
from services.config.adapters.batches import BatchProjection, BatchStore
from services.config.adapters.read_model import metadata
from services.config.adapters.sent_counts import sent_since
from shared.db.engine import create_engine, session_factory
from shared.events.envelope import Envelope, EventData, make_event
from shared.events.schemas.dispatch import MessageCancelled, MessageQueued, MessageSent

BATCH = "0b6f3f0e-8d55-4c52-93a4-2f6a1b7c9e10"


def _event(data: EventData) -> Envelope:
    return make_event(data, source="sms_gateway", actor="service:sms_gateway", subject="x")


def _queued(site: str, message: str, batch: str | None = BATCH) -> Envelope:
    return _event(
        MessageQueued(
            message_id=message,
            group_id="g",
            site_id=site,
            channel="sms",
            to="+61400000000",
            batch_id=batch,
        )
    )


async def test_counts_follow_the_events_and_stay_within_the_batchs_site(tmp_path: Path) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'config.db'}")
    async with engine.begin() as connection:
        await connection.run_sync(metadata.create_all)
    db = session_factory(engine)
    store = BatchStore(db)
    try:
        await store.record(
            batch_id=BATCH,
            group_id="g",
            site_id="a",
            channel="sms",
            message_ids=["m1", "m2", "m3"],
            actor="token:t",
        )
        now = datetime.now(UTC)
        common = {"group_id": "g", "site_id": "a", "channel": "sms"}
        events = [
            _queued("a", "m1"),
            _queued("a", "m2"),
            _queued("b", "x1"),  # another site's producer naming site a's batch
            _event(MessageSent(message_id="m1", account="acct", sent_at=now, **common)),
            _event(MessageCancelled(message_id="m2", reason="cancelled by staff", **common)),
            _event(MessageSent(message_id="y", account="acct", sent_at=now, **common)),
        ]
        async with db() as session, session.begin():
            await BatchProjection().apply(session, events)
        batch = await store.get(BATCH)
        assert batch is not None and batch.site_id == "a"
        counts = batch.progress.counts
        assert (batch.progress.total, counts["sent"], counts["cancelled"]) == (3, 1, 1)
        assert (counts["accepted"], counts["queued"]) == (1, 0)
        assert await store.waiting(BATCH, "a") == ["m3"]
        # Every send counts toward the site's day, in a batch or not.
        assert await sent_since(db, ["a", "b"], now - timedelta(hours=1)) == {"a": 2}
        # A redelivered queued event does not move a finished message back.
        async with db() as session, session.begin():
            await BatchProjection().apply(session, [_queued("a", "m1")])
        assert (await store.get(BATCH)).progress.counts["sent"] == 1  # type: ignore[union-attr]
    finally:
        await engine.dispose()
