"""The audit trail: every event, as written, hash-chained per group.

Each record keeps the event's attributes and its data exactly as stored in JetStream. Its hash
covers those fields and the hash of the group's previous record, so editing or deleting a row
breaks the chain at that row (`verify`). The `AUDIT` stream gives one total order, so a rebuild
from the stream reproduces every hash exactly.

Each message's current state (the console's outbox) is a separate projection of the same
stream (`message_status.py`), with its own position: the trail never waits for it.
"""

from __future__ import annotations

import hashlib
import logging
import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from nats.aio.msg import Msg
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.audit.domain.chain import GENESIS, HASHED, digest_values
from shared.bus.topology import AUDIT
from shared.db.sql import (
    SQLITE_MAX_VARIABLES,
    bulk_insert,
    bulk_insert_sync,
    upsert,
    upsert_statement,
)
from shared.eventstore import stream_position

log = logging.getLogger(__name__)

metadata = sa.MetaData()

records = sa.Table(
    "audit_records",
    metadata,
    sa.Column("position", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("event_id", sa.String(80), nullable=False, unique=True),
    sa.Column("type", sa.String(120), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("subject", sa.String(320), nullable=True),
    sa.Column("actor", sa.String(200), nullable=False),
    sa.Column("time", sa.String(40), nullable=False),
    sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    sa.Column("group_id", sa.String(63), nullable=True),
    sa.Column("site_id", sa.String(63), nullable=True),
    sa.Column("message_id", sa.String(64), nullable=True),
    sa.Column("correlation_id", sa.String(200), nullable=True),
    sa.Column("origin_stream", sa.String(40), nullable=True),
    sa.Column("origin_sequence", sa.BigInteger, nullable=True),
    sa.Column("nats_subject", sa.String(300), nullable=False),
    sa.Column("data", sa.Text, nullable=False),
    sa.Column("chain", sa.String(63), nullable=False),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    # Few indexes on purpose: every one slows the trail's append (and its rebuild).
    sa.Index("ix_audit_records_group_pos", "group_id", "position"),
    sa.Index("ix_audit_records_site_pos", "site_id", "position"),
    sa.Index("ix_audit_records_message", "message_id"),
)

chain_heads = sa.Table(
    "audit_chain_heads",
    metadata,
    sa.Column("chain", sa.String(63), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Column("records", sa.BigInteger, nullable=False),
)

messages = sa.Table(
    "audit_messages",
    metadata,
    sa.Column("message_id", sa.String(64), primary_key=True),
    sa.Column("group_id", sa.String(63), nullable=True),
    # Keyed by (message id, site) like the gateways' ledger: ids are unique within a site only.
    sa.Column("site_id", sa.String(63), primary_key=True),
    sa.Column("channel", sa.String(8), nullable=True),
    sa.Column("recipient", sa.String(320), nullable=True),
    sa.Column("category", sa.String(32), nullable=True),
    sa.Column("state", sa.String(16), nullable=True),
    sa.Column("receipt", sa.String(16), nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("attempts", sa.Integer, nullable=True),
    sa.Column("retry_of", sa.String(64), nullable=True),
    sa.Column("queued_at", sa.String(40), nullable=True),
    sa.Column("sent_at", sa.String(40), nullable=True),
    sa.Column("retry_at", sa.String(40), nullable=True),
    sa.Column("updated_at", sa.String(40), nullable=True),
    sa.Column("last_position", sa.BigInteger, nullable=True),
    sa.Index("ix_audit_messages_site_state", "site_id", "state"),
)

RECORD_COLUMNS = tuple(c.name for c in records.columns)
# A prepared record is a tuple of every column but `at` (derived from `time` where it is
# stored) and the two hashes, which chaining appends. Tuples of plain values, not dicts: on
# SQLite they cross to the writer process, and pickling a dict or a datetime per record cost
# more than writing it.
_DERIVED = ("at", "prev_hash", "hash")
PREPARED_COLUMNS = tuple(c for c in RECORD_COLUMNS if c not in _DERIVED)
INSERTED_COLUMNS = PREPARED_COLUMNS + _DERIVED
Record = tuple[Any, ...]
_PREPARED = operator.itemgetter(*PREPARED_COLUMNS)
_EVENT_ID = PREPARED_COLUMNS.index("event_id")
_POSITION = PREPARED_COLUMNS.index("position")
_CHAIN = PREPARED_COLUMNS.index("chain")
_TIME = PREPARED_COLUMNS.index("time")
SYSTEM_CHAIN = "_system"
MESSAGE_COLUMNS = tuple(c.name for c in messages.columns)
# Event types whose subject attribute is a message id.
_MESSAGE_TYPES = ("stagger.dispatch.", "stagger.message.")
_HASHED_VALUES = operator.itemgetter(*(PREPARED_COLUMNS.index(name) for name in HASHED))
STATE_OF = {
    "stagger.dispatch.queued": "queued",
    "stagger.dispatch.deferred": "queued",
    "stagger.dispatch.sent": "sent",
    "stagger.dispatch.failed": "failed",
    "stagger.dispatch.suppressed": "suppressed",
    "stagger.dispatch.cancelled": "cancelled",
    "stagger.dispatch.expired": "expired",
}


_BIG = 2**63
_SMALL = 2**31


def _shape(column: sa.Column[Any]) -> tuple[str, int | None]:
    """("int", limit) / ("text", width or None) / ("any", None) for `_fit`."""
    kind = column.type
    if isinstance(kind, sa.Integer):
        return "int", _BIG if isinstance(kind, sa.BigInteger) else _SMALL
    if isinstance(kind, sa.String):  # Text included
        return "text", kind.length
    return "any", None


def _fit(value: Any, shape: tuple[str, int | None]) -> Any:
    """`value` as its column can hold it on every database: text without NUL (PostgreSQL
    refuses it), cut to the column's width; integers within the column's range; else None."""
    if value is None:
        return None
    kind, width = shape
    if kind == "text":
        # The usual case, checked first: every event of a well-behaved producer takes it.
        if type(value) is str and "\x00" not in value and (width is None or len(value) <= width):
            return value
        if isinstance(value, dict | list):
            return None
        text = str(value).replace("\x00", "\ufffd")
        if width is None or len(text) <= width:
            return text
        if width < 32:
            return text[: width - 1] + "…"
        # Cut values stay distinct (event ids are unique): the cut ends with a digest.
        tail = hashlib.sha256(text.encode("utf-8", "replace")).hexdigest()[:16]
        return text[: width - 17] + "…" + tail
    if kind == "int":
        assert width is not None
        ok = type(value) is int and -width <= value < width
        return value if ok else None
    return value


_SHAPES: dict[str, dict[str, tuple[str, int | None]]] = {}
_SUBJECT_SHAPE = _shape(records.c.subject)
_GROUP_SHAPE = _shape(records.c.group_id)


def fitted(table: sa.Table, row: dict[str, Any]) -> dict[str, Any]:
    shapes = _SHAPES.get(table.name)
    if shapes is None:
        shapes = _SHAPES[table.name] = {c.name: _shape(c) for c in table.columns}
    return {k: _fit(v, shapes[k]) if k in shapes else v for k, v in row.items()}


# Text columns a record gets from its event (the hashes are added later, by `apply`).
_TEXT_LIMITS = tuple(
    (c.name, width)
    for c in records.columns
    for kind, width in [_shape(c)]
    if kind == "text" and c.name not in ("prev_hash", "hash")
)


def _fits(row: dict[str, Any]) -> bool:
    """True if `_fitted` would return `row` unchanged (every well-behaved event: checked
    first, since fitting each column costs more than the rest of the record)."""
    for name, width in _TEXT_LIMITS:
        value = row[name]
        if value is not None and (
            type(value) is not str or "\x00" in value or (width is not None and len(value) > width)
        ):
            return False
    origin_sequence = row["origin_sequence"]
    return origin_sequence is None or origin_sequence < _BIG


def _utc(text: str) -> datetime:
    """A CloudEvent time as an aware UTC datetime (the epoch if unreadable)."""
    try:
        at = datetime.fromisoformat(text)
        # In UTC, so that times compare as stored (SQLite keeps the text without its offset).
        if at.tzinfo is None:
            return at.replace(tzinfo=UTC)
        return at if at.tzinfo is UTC else at.astimezone(UTC)
    except (ValueError, OverflowError):
        return _EPOCH


_EPOCH = datetime.fromtimestamp(0, UTC)


def record_from(msg: Msg) -> dict[str, Any] | None:
    """The record fields of one AUDIT message (None if it is not a CloudEvent).

    Whatever a producer wrote is recorded, even when it is not a valid event; values too long
    for their column are cut (marked `…`) and NUL characters replaced, so one hostile event
    cannot stop the trail (the stream keeps the original bytes).
    """
    headers = msg.headers or {}
    ce_type = headers.get("ce-type")
    if not ce_type:
        return None
    name, _, version = ce_type.rpartition(".v")
    if not version.isdigit() or len(version) > 9:
        name, version = ce_type, "0"
    position = stream_position(msg)[0]
    parts = headers.get("Nats-Stream-Source", "").split(" ")
    has_origin = len(parts) >= 2
    time_text = headers.get("ce-time", "")
    subject = headers.get("ce-subject")
    group_id = headers.get("ce-groupid")
    row = {
        "position": position,
        "event_id": headers.get("ce-id") or headers.get("Nats-Msg-Id") or f"pos-{position}",
        "type": name,
        "version": int(version),
        "source": headers.get("ce-source", ""),
        "subject": subject,
        "actor": headers.get("ce-actor", "unknown"),
        "time": time_text,
        "group_id": group_id,
        "site_id": headers.get("ce-siteid"),
        "message_id": subject if name.startswith(_MESSAGE_TYPES) else None,
        "correlation_id": headers.get("ce-correlationid"),
        "origin_stream": parts[0] if has_origin else None,
        "origin_sequence": int(parts[1]) if has_origin and parts[1].isdigit() else None,
        "nats_subject": parts[4] if len(parts) >= 5 else msg.subject,
        "data": (msg.data or b"").decode("utf-8", errors="replace"),
        "chain": group_id or SYSTEM_CHAIN,
    }
    if _fits(row):
        return row
    # Something is too long, holds NUL or is not text: fit each value. The subject and the
    # group are fitted first because the message id and the chain are derived from them.
    subject = _fit(subject, _SUBJECT_SHAPE)
    group_id = _fit(group_id, _GROUP_SHAPE)
    row.update(
        subject=subject,
        group_id=group_id,
        message_id=subject if name.startswith(_MESSAGE_TYPES) else None,
        chain=group_id or SYSTEM_CHAIN,
    )
    return fitted(records, row)


@dataclass
class _Head:
    position: int
    hash: str
    records: int


class AuditProjection:
    """Appends every AUDIT event to the chained trail.

    `prepare` (before the transaction, while the previous batch commits) only reads the
    events into records. De-duplication and chaining happen in `apply`, inside the batch's
    transaction, so they see every record committed before. The heads of the chains are
    cached between batches; `reset` drops them whenever the runner starts over from the
    database (a restart, a failed batch, or another runner having moved the position). On a
    SQLite file the runner calls `apply_sync` in its writer process, on an instance of its
    own, created for each run (as fresh as after `reset`).
    """

    name = "audit.trail"
    stream = AUDIT
    filter_subject: str | None = None
    wants_raw_messages = True

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        """Forget everything not read from the database."""
        self._heads: dict[str, _Head] = {}

    async def prepare(
        self, sessions: async_sessionmaker[AsyncSession], events: Sequence[Msg]
    ) -> list[Record]:
        """Records of a batch, as `PREPARED_COLUMNS` tuples (nothing read or written)."""
        return [_PREPARED(r) for r in map(record_from, events) if r is not None]

    async def apply(self, session: AsyncSession, events: Sequence[Record]) -> None:
        """Chain and store a batch's new records and move the chains' heads (in the runner's
        transaction)."""
        if not events:
            return
        stored = {x[0] for x in await session.execute(_stored_ids(events))}
        unknown = self._unknown_chains(events)
        if unknown:
            self._remember(await session.execute(_heads_of(unknown)))
        fresh, heads = self._chain(events, stored)
        if fresh:
            await bulk_insert(session, records, INSERTED_COLUMNS, fresh)
            await upsert(session, chain_heads, ["chain"], heads, update=_HEAD_UPDATE)

    def apply_sync(self, conn: sa.Connection, events: Sequence[Record]) -> None:
        """`apply` on a synchronous connection (the runner's SQLite writer process)."""
        if not events:
            return
        stored = _stored_ids_sqlite(conn, [r[_EVENT_ID] for r in events])
        unknown = self._unknown_chains(events)
        if unknown:
            self._remember(conn.execute(_heads_of(unknown)))
        fresh, heads = self._chain(events, stored)
        if fresh:
            bulk_insert_sync(conn, records, INSERTED_COLUMNS, fresh)
            statement = upsert_statement(
                conn.dialect.name, chain_heads, ["chain"], update=_HEAD_UPDATE
            )
            conn.execute(statement, heads)

    def _unknown_chains(self, rows: Sequence[Record]) -> set[str]:
        return {r[_CHAIN] for r in rows} - self._heads.keys()

    def _remember(self, heads: Iterable[Any]) -> None:
        for h in heads:
            self._heads[h.chain] = _Head(h.position, h.hash, h.records)

    def _chain(
        self, rows: Sequence[Record], seen: set[str]
    ) -> tuple[list[Record], list[dict[str, Any]]]:
        """The rows not stored yet (an event published twice, after a crash, keeps its first
        record only), as `INSERTED_COLUMNS` tuples: `at` (read from `time`), the chain's
        previous hash and the row's own appended. Also the new head of every chain they
        extend."""
        fresh: list[Record] = []
        heads = self._heads
        moved: dict[str, _Head] = {}
        for row in rows:
            event_id = row[_EVENT_ID]
            if event_id in seen:
                continue
            seen.add(event_id)
            chain = row[_CHAIN]
            head = heads.get(chain) or _Head(0, GENESIS, 0)
            value = digest_values(head.hash, _HASHED_VALUES(row))
            fresh.append((*row, _utc(row[_TIME]), head.hash, value))
            heads[chain] = moved[chain] = _Head(row[_POSITION], value, head.records + 1)
        return fresh, [
            {"chain": chain, "position": h.position, "hash": h.hash, "records": h.records}
            for chain, h in moved.items()
        ]


def _stored_ids(rows: Sequence[Record]) -> sa.Select[Any]:
    return sa.select(records.c.event_id).where(records.c.event_id.in_([r[_EVENT_ID] for r in rows]))


def _stored_ids_sqlite(conn: sa.Connection, ids: list[str]) -> set[str]:
    """Which of `ids` the trail holds, on SQLite (the writer process): plain placeholders,
    bound by the driver, instead of compiling an expanding IN of thousands of values."""
    stored: set[str] = set()
    for start in range(0, len(ids), SQLITE_MAX_VARIABLES):
        chunk = tuple(ids[start : start + SQLITE_MAX_VARIABLES])
        marks = ", ".join("?" * len(chunk))
        query = f"SELECT event_id FROM {records.name} WHERE event_id IN ({marks})"
        stored.update(x[0] for x in conn.exec_driver_sql(query, chunk))
    return stored


def _heads_of(chains: set[str]) -> sa.Select[Any]:
    return sa.select(chain_heads).where(chain_heads.c.chain.in_(chains))


_HEAD_UPDATE = ("position", "hash", "records")
