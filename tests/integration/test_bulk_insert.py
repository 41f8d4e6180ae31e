"""`bulk_insert` on real SQLite and PostgreSQL: every row stored as SQLAlchemy would store it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.db.engine import create_engine, session_factory, sqlite_sync_engine
from shared.db.sql import bulk_insert, bulk_insert_sync

metadata = sa.MetaData()
# Three columns: SQLite takes up to 10,922 rows per statement, so 25,000 rows need three.
items = sa.Table(
    "bulk_items",
    metadata,
    sa.Column("id", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
)
COLUMNS = ("id", "label", "at")
ROWS = 25_000
START = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)
PARIS = timezone(timedelta(hours=2))


def _row(n: int) -> tuple[int, str | None, datetime]:
    # UTC and non-UTC offsets both; labels with quotes, commas, non-ASCII and NULLs.
    at = START + timedelta(seconds=n)
    label = None if n % 7 == 0 else f"row {n}, 'quoted' é😀"
    return n, label, at if n % 2 else at.astimezone(PARIS)


@pytest.fixture
async def sessions(database_url: str) -> AsyncIterator[async_sessionmaker[AsyncSession]]:
    engine = create_engine(database_url)
    async with engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    yield session_factory(engine)
    await engine.dispose()


async def test_many_rows_in_order_with_times_comparable(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    async with sessions() as session, session.begin():
        await bulk_insert(session, items, COLUMNS, [_row(n) for n in range(ROWS)])
    async with sessions() as session:
        stored = (await session.execute(sa.select(items).order_by(items.c.id))).all()
        # A Core comparison on the column sees every time as the same instant.
        later = await session.scalar(
            sa.select(sa.func.count()).where(items.c.at >= START + timedelta(seconds=ROWS // 2))
        )
    assert len(stored) == ROWS
    assert later == ROWS - ROWS // 2
    for n in (0, 1, 6, 7, 10_921, 10_922, 10_923, ROWS - 1):
        row = stored[n]
        expected_id, expected_label, expected_at = _row(n)
        assert (row.id, row.label) == (expected_id, expected_label)
        assert row.at.replace(tzinfo=row.at.tzinfo or UTC) == expected_at


async def test_conflicts_ignored_when_asked(sessions: async_sessionmaker[AsyncSession]) -> None:
    first = [_row(n) for n in range(10)]
    again = [(n, "second", START) for n in range(5, 15)]
    async with sessions() as session, session.begin():
        await bulk_insert(session, items, COLUMNS, first)
        await bulk_insert(session, items, COLUMNS, again, on_conflict="ON CONFLICT DO NOTHING")
    async with sessions() as session:
        labels = dict((await session.execute(sa.select(items.c.id, items.c.label))).all())
    assert len(labels) == 15
    assert labels[5] == _row(5)[1]
    assert labels[14] == "second"


async def test_sync_insert_on_a_sqlite_file_stores_what_the_async_one_does(
    tmp_path: Path,
) -> None:
    # `bulk_insert_sync` (the writer process's) takes another path on SQLite: one one-row
    # statement for every row. Both must store identical rows.
    sync_url = f"sqlite:///{tmp_path / 'sync.db'}"
    writer = sqlite_sync_engine(sync_url)
    metadata.create_all(writer)
    rows = [_row(n) for n in range(3_000)]
    with writer.begin() as conn:
        bulk_insert_sync(conn, items, COLUMNS, rows[:2_000])
        bulk_insert_sync(conn, items, COLUMNS, [])
        again = [(n, "second", START) for n in range(1_990, 3_000)]
        bulk_insert_sync(conn, items, COLUMNS, again, on_conflict="ON CONFLICT DO NOTHING")
    writer.dispose()

    expected_url = f"sqlite+aiosqlite:///{tmp_path / 'async.db'}"
    expected_engine = create_engine(expected_url)
    async with expected_engine.begin() as conn:
        await conn.run_sync(metadata.create_all)
    async with session_factory(expected_engine)() as session, session.begin():
        await bulk_insert(session, items, COLUMNS, rows[:2_000])
        await bulk_insert(session, items, COLUMNS, again, on_conflict="ON CONFLICT DO NOTHING")
    await expected_engine.dispose()

    def stored(url: str) -> list[tuple[object, ...]]:
        engine = sa.create_engine(url)
        try:
            with engine.connect() as conn:
                # Raw text as stored, so that a difference in the datetime format shows.
                return [
                    tuple(r) for r in conn.exec_driver_sql("SELECT id, label, at FROM bulk_items")
                ]
        finally:
            engine.dispose()

    ours = stored(sync_url)
    assert len(ours) == 3_000
    assert ours == stored(expected_url.replace("+aiosqlite", ""))
    assert dict((i, label) for i, label, _ in ours)[1_995] == _row(1_995)[1]
