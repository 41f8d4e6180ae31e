"""SQL helpers the queue's statements share."""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from shared.dispatch.queue.records import Key


def keyed(m: sa.Table, keys: Collection[Key]) -> sa.ColumnElement[bool]:
    """The rows of these (site id, message id) keys."""
    return sa.tuple_(m.c.site_id, m.c.message_id).in_(sorted(keys))


def picked(session: AsyncSession, m: sa.Table, chosen: sa.Select[Any]) -> Any:
    """The row is one of `chosen` (a SELECT of site_id, message_id with ORDER BY … LIMIT),
    safely for replicas.

    PostgreSQL may re-run an IN-subquery with LIMIT once per candidate row, taking more rows
    than the limit; a CTE is evaluated once, and `FOR UPDATE SKIP LOCKED` lets concurrent
    replicas pick disjoint rows. SQLite runs one writer at a time and evaluates the subquery
    once, so the plain IN form is correct there.
    """
    if session.bind is not None and session.bind.dialect.name == "postgresql":
        picked = chosen.with_for_update(skip_locked=True).cte("picked")
        return sa.and_(m.c.site_id == picked.c.site_id, m.c.message_id == picked.c.message_id)
    return sa.tuple_(m.c.site_id, m.c.message_id).in_(chosen)


def utc(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything here is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
