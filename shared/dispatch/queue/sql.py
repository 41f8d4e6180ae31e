"""SQL helpers the queue's statements share."""

from __future__ import annotations

from collections.abc import Collection, Sequence
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


MANY_SITES = 16
"""From this many sites, SQLite claims in queue order (see `claim_sites`)."""


def _queue_order_index(m: sa.Table) -> bool:
    return any(ix.name == f"ix_{m.name}_queue_order" for ix in m.indexes)


def _sqlite(session: AsyncSession) -> bool:
    return session.bind is not None and session.bind.dialect.name == "sqlite"


def _unindexed(m: sa.Table, column: sa.Column[Any]) -> sa.ColumnElement[Any]:
    # SQLite's documented way to keep a term out of index selection: a unary plus.
    return sa.literal_column(f"+{m.name}.{column.name}", column.type)


def claim_sites(session: AsyncSession, m: sa.Table, site_ids: Sequence[str]) -> Any:
    """The claim's site condition, steering SQLite to the index that suits the claim.

    An account's tick claims for all its sites (250 in the load test): through the per-site
    index (site, state, accepted) that reads and sorts every queued message of those sites
    for each claim of 200, a cost that grows with the queue (58 ms per claim at 50,000
    queued). Where `<table>_queue_order` (state, accepted, seq, id, site) exists, reading it in
    claim order stops after about limit × (all queued / these sites' queued) rows: 0.6 ms. For
    a few sites the per-site index stays best. PostgreSQL chooses by its statistics; SQLite
    (no ANALYZE) would take the ordered index even for one site, so it is told: a unary `+`
    keeps a column out of index use.
    """
    if _sqlite(session) and len(site_ids) >= MANY_SITES and _queue_order_index(m):
        return _unindexed(m, m.c.site_id).in_(list(site_ids))
    return m.c.site_id.in_(list(site_ids))


def claim_order(session: AsyncSession, m: sa.Table, site_ids: Sequence[str]) -> Any:
    """The claim's first sort key; for a few sites on SQLite, one no index can supply, so
    that the per-site index is used (see `claim_sites`)."""
    if _sqlite(session) and len(site_ids) < MANY_SITES and _queue_order_index(m):
        return _unindexed(m, m.c.accepted_at)
    return m.c.accepted_at


def utc(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything here is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)
