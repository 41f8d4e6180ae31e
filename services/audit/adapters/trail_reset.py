"""Starting the audit trail over (after `stagger privacy rewrite-streams` recreated the AUDIT
stream): what the old trail ended with, and emptying it for a rebuild.

The old rows held the clear events, so on SQLite they are deleted with `secure_delete` on
(their bytes overwritten, not left in free pages) and the file vacuumed; on PostgreSQL the
tables are rewritten (`VACUUM FULL`), so their old files, dead rows included, are removed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from services.audit.adapters.message_status import MessageStatusProjection
from services.audit.adapters.trail import AuditProjection, chain_heads, messages, records

PROJECTIONS = (AuditProjection.name, MessageStatusProjection.name)


async def old_heads(db: async_sessionmaker[AsyncSession]) -> list[dict[str, Any]]:
    """Every chain's last record (chain, position, hash, records), in chain order."""
    async with db() as session:
        rows = await session.execute(sa.select(chain_heads).order_by(chain_heads.c.chain))
        return [dict(r._mapping) for r in rows]


async def record_hashes(
    db: async_sessionmaker[AsyncSession],
) -> AsyncIterator[tuple[str, int, str]]:
    """(event id, position, hash) of every record, in position order."""
    query = sa.select(records.c.event_id, records.c.position, records.c.hash).order_by(
        records.c.position
    )
    async with db() as session:
        result = await session.stream(query)
        async for row in result:
            yield row.event_id, row.position, row.hash


async def empty_trail(engine: AsyncEngine) -> None:
    """Delete every record, chain head and message status, and their projections' positions,
    so the next run (the audit service, or `rebuild`) reads the AUDIT stream from its start."""
    sqlite = engine.dialect.name == "sqlite"
    async with engine.begin() as conn:
        if sqlite:
            await conn.exec_driver_sql("PRAGMA secure_delete=ON")
        for table in (records, chain_heads, messages):
            await conn.execute(sa.delete(table))
        await conn.execute(
            sa.text("DELETE FROM projection_positions WHERE projection IN (:a, :b)"),
            {"a": PROJECTIONS[0], "b": PROJECTIONS[1]},
        )
    if engine.dialect.name == "postgresql":
        tables = ", ".join(t.name for t in (records, chain_heads, messages))
        async with engine.execution_options(isolation_level="AUTOCOMMIT").connect() as conn:
            await conn.exec_driver_sql(f"VACUUM FULL {tables}")
    if sqlite:
        # On the driver's own connection: VACUUM refuses a transaction, and the engine begins
        # one on every connection. The free pages go and the file shrinks.
        async with engine.connect() as conn:
            raw = await conn.get_raw_connection()
            driver = raw.driver_connection
            assert driver is not None
            await driver.execute("VACUUM")
