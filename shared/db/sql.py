"""Small SQL helpers that differ between SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Mapping, Sequence
from datetime import UTC
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

# Bound parameters allowed in one statement (SQLite's default limit; 999 before 3.32).
SQLITE_MAX_VARIABLES = 32766 if sqlite3.sqlite_version_info >= (3, 32, 0) else 999


def _dialect_name(session: AsyncSession) -> str:
    return session.bind.dialect.name if session.bind is not None else "sqlite"


def _dialect_module(name: str) -> Any:
    """The dialect module (for its INSERT with ON CONFLICT) of a database by name."""
    return postgresql if name == "postgresql" else sqlite


def _dialect(session: AsyncSession) -> Any:
    """The dialect module of the session's database."""
    return _dialect_module(_dialect_name(session))


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


def upsert_statement(
    dialect: str,
    table: sa.Table,
    keys: Sequence[str],
    *,
    update: Sequence[str],
    keep_existing: bool = False,
) -> Any:
    """INSERT … ON CONFLICT (keys) DO UPDATE for `dialect` ("sqlite" or "postgresql"), to
    execute with a list of rows. With `keep_existing`, a NULL in a new row keeps the stored
    value (partial updates)."""
    statement = _dialect_module(dialect).insert(table)
    excluded = statement.excluded
    values = {
        name: (sa.func.coalesce(excluded[name], table.c[name]) if keep_existing else excluded[name])
        for name in update
    }
    return statement.on_conflict_do_update(index_elements=list(keys), set_=values)


async def upsert(
    session: AsyncSession,
    table: sa.Table,
    keys: Sequence[str],
    rows: Sequence[Mapping[str, Any]],
    *,
    update: Sequence[str],
    keep_existing: bool = False,
) -> None:
    """INSERT … ON CONFLICT (keys) DO UPDATE, executed for many rows at once (see
    `upsert_statement`)."""
    if not rows:
        return
    statement = upsert_statement(
        _dialect_name(session), table, keys, update=update, keep_existing=keep_existing
    )
    await session.execute(statement, list(rows))


def _placeholders(dialect: str, count: int) -> str:
    if dialect == "postgresql":
        return ", ".join(f"${i}" for i in range(1, count + 1))
    return ", ".join("?" for _ in range(count))


def sqlite_datetime(value: Any) -> Any:
    """How SQLAlchemy's DateTime stores an aware datetime in SQLite (UTC, naive text)."""
    if value is None or not hasattr(value, "utcoffset"):
        return value
    if value.tzinfo is UTC:
        value = value.replace(tzinfo=None)
    elif value.utcoffset() is not None:
        value = value.astimezone(UTC).replace(tzinfo=None)
    # isoformat, not strftime: the same text (always with microseconds, a 4-digit year, as
    # SQLAlchemy writes it), three times faster on the audit rebuild's hot path.
    return value.isoformat(" ", "microseconds")


def insert_statements(
    dialect: str,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: str = "",
) -> list[tuple[str, Any]]:
    """Driver-level (SQL, parameters) pairs inserting `rows` (tuples in `columns` order).

    PostgreSQL: one executemany. SQLite: as many rows per statement as its parameter limit
    allows, so that SQLite inserts them in one step with the GIL released (with executemany the
    driver takes the GIL back after every row, and while another thread is busy each of those
    waits a switch interval). Datetimes are converted for SQLite exactly as SQLAlchemy's
    DateTime would store them, so Core queries still compare them correctly.
    """
    if not rows:
        return []
    if dialect != "sqlite":
        return [(_one_row_insert(dialect, table, columns, on_conflict), list(rows))]
    names = ", ".join(columns)
    one_row = f"({_placeholders(dialect, len(columns))})"
    rows = _sqlite_rows(table, columns, rows)
    per_statement = max(1, SQLITE_MAX_VARIABLES // len(columns))
    statements = []
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        tuples = ", ".join([one_row] * len(chunk))
        statements.append(
            (
                f"INSERT INTO {table.name} ({names}) VALUES {tuples} {on_conflict}",
                tuple(itertools.chain.from_iterable(chunk)),
            )
        )
    return statements


def _one_row_insert(dialect: str, table: sa.Table, columns: Sequence[str], on_conflict: str) -> str:
    """INSERT of one row in `columns` order, for the driver's executemany."""
    values = _placeholders(dialect, len(columns))
    return f"INSERT INTO {table.name} ({', '.join(columns)}) VALUES ({values}) {on_conflict}"


def _sqlite_rows(
    table: sa.Table, columns: Sequence[str], rows: Sequence[Sequence[Any]]
) -> Sequence[Sequence[Any]]:
    """`rows` with their DateTime values as SQLAlchemy stores them in SQLite."""
    date_columns = [i for i, c in enumerate(columns) if isinstance(table.c[c].type, sa.DateTime)]
    if len(date_columns) == 1:
        # The usual case (the audit trail): one slice-and-join per row, no list copy.
        (i,) = date_columns
        return [(*row[:i], sqlite_datetime(row[i]), *row[i + 1 :]) for row in rows]
    if not date_columns:
        return rows
    converted = []
    for row in rows:
        values = list(row)
        for i in date_columns:
            values[i] = sqlite_datetime(values[i])
        converted.append(tuple(values))
    return converted


async def bulk_insert(
    session: AsyncSession,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: str = "",
) -> None:
    """Insert many rows straight through the driver, skipping SQLAlchemy's per-row parameter
    processing: for hot paths such as rebuilding the audit trail (see `insert_statements`).

    `on_conflict` is an optional literal clause (e.g. "ON CONFLICT (x) DO NOTHING").
    """
    if not rows:
        return
    conn = await session.connection()
    for sql, parameters in insert_statements(
        conn.dialect.name, table, columns, rows, on_conflict=on_conflict
    ):
        await conn.exec_driver_sql(sql, parameters)


def bulk_insert_sync(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    *,
    on_conflict: str = "",
) -> None:
    """`bulk_insert` on a synchronous connection: a projection's writer process, which has
    the interpreter to itself, so on SQLite one one-row statement serves every row
    (executemany, as fast there). Multi-row statements of every batch's remainder size would
    each be prepared and cached by the driver: 60 MB of compiled statements in the audit
    rebuild's writer."""
    if not rows:
        return
    if conn.dialect.name != "sqlite":
        for sql, parameters in insert_statements(
            conn.dialect.name, table, columns, rows, on_conflict=on_conflict
        ):
            conn.exec_driver_sql(sql, parameters)
        return
    sql = _one_row_insert("sqlite", table, columns, on_conflict)
    conn.exec_driver_sql(sql, list(_sqlite_rows(table, columns, rows)))
