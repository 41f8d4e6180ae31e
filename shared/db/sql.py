"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession


def _dialect(session: AsyncSession) -> Any:
    """The dialect module (for its INSERT with ON CONFLICT) of the session's database."""
    name = session.bind.dialect.name if session.bind is not None else "sqlite"
    return postgresql if name == "postgresql" else sqlite


def insert_ignoring_duplicates(
    session: AsyncSession, table: sa.Table, rows: Sequence[Mapping[str, Any]]
) -> Any:
    """INSERT … ON CONFLICT DO NOTHING for the session's dialect (primary-key conflicts)."""
    return _dialect(session).insert(table).values(list(rows)).on_conflict_do_nothing()


def insert_many_ignoring_duplicates(session: AsyncSession, table: sa.Table) -> Any:
    """INSERT … ON CONFLICT DO NOTHING without values, to execute with a list of rows.

    Unlike `insert_ignoring_duplicates` (rows inside the statement, which SQLAlchemy compiles
    anew on every call), this form is compiled once and cached; with RETURNING, SQLAlchemy
    still sends the rows as one multi-row statement ("insertmanyvalues").
    """
    return _dialect(session).insert(table).on_conflict_do_nothing()


async def upsert(
    session: AsyncSession,
    table: sa.Table,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    update: Sequence[str],
    keep_existing: bool = False,
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, executed for many rows at once.

    With `keep_existing`, a NULL in a new row keeps the stored value (partial updates).
    """
    if not rows:
        return
    statement = _dialect(session).insert(table)
    excluded = statement.excluded
    values = {
        name: (sa.func.coalesce(excluded[name], table.c[name]) if keep_existing else excluded[name])
        for name in update
    }
    await session.execute(
        statement.on_conflict_do_update(index_elements=list(keys), set_=values), list(rows)
    )


def _placeholders(dialect: str, count: int) -> str:
    if dialect == "postgresql":
        return ", ".join(f"${i}" for i in range(1, count + 1))
    return ", ".join("?" for _ in range(count))


def sqlite_datetime(value: Any) -> Any:
    """How SQLAlchemy's DateTime stores an aware datetime in SQLite (UTC, naive text)."""
    if value is None or not hasattr(value, "utcoffset"):
        return value
    if value.utcoffset() is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat, not strftime: the same text (always with microseconds, a 4-digit year, as
    # SQLAlchemy writes it), three times faster on the audit rebuild's hot path.
    return value.isoformat(" ", "microseconds")


async def bulk_insert(
    session: AsyncSession,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: str = "",
) -> None:
    """Insert many rows straight through the driver (executemany), skipping SQLAlchemy's
    per-row parameter processing: for hot paths such as rebuilding the audit trail.

    `rows` are tuples in `columns` order. Datetimes are converted for SQLite exactly as
    SQLAlchemy's DateTime would store them, so Core queries still compare them correctly.
    `on_conflict` is an optional literal clause (e.g. "ON CONFLICT (x) DO NOTHING").
    """
    if not rows:
        return
    conn = await session.connection()
    dialect = conn.dialect.name
    names = ", ".join(columns)
    sql = (
        f"INSERT INTO {table.name} ({names}) VALUES "
        f"({_placeholders(dialect, len(columns))}) {on_conflict}"
    )
    if dialect == "sqlite":
        date_columns = [
            i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.DateTime)
        ]
        if date_columns:
            converted = []
            for row in rows:
                values = list(row)
                for i in date_columns:
                    values[i] = sqlite_datetime(values[i])
                converted.append(tuple(values))
            rows = converted
    await conn.exec_driver_sql(sql, list(rows))
