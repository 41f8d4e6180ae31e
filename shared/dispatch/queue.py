"""The gateway's queue and ledger in SQL: every state change is a compare-and-set.

States: `queued` → `sending` (claimed under a lease, written *before* the provider call) →
one terminal state (`sent`, `failed`, `suppressed`, `cancelled`, `expired`), written *after*
it together with its event. A row leaves `sending` only by its lease owner, or, once the lease
has expired, by whoever takes the lease over and reconciles with the provider.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from shared.bus import subjects
from shared.db.sql import insert_ignoring_duplicates, insert_many_ignoring_duplicates
from shared.dispatch import schema
from shared.dispatch.pending_events import add_event, event_id
from shared.dispatch.schema import DispatchTables
from shared.events.envelope import EventData
from shared.events.schemas.dispatch import (
    MessageCancelled,
    MessageDeferred,
    MessageDelivered,
    MessageExpired,
    MessageFailed,
    MessageQueued,
    MessageSent,
    MessageSuppressed,
    MessageUndelivered,
    Release,
)
from shared.events.schemas.messages import MessageAccepted

Key = tuple[str, str]
"""(site id, message id): a message's key in the ledger. Ids are unique within a site only."""

INGEST_CHUNK_BITS = 7
"""Intake inserts at most 2**7 = 128 rows per statement, in power-of-two chunks."""


@dataclass(frozen=True)
class Claimed:
    """A message this replica holds the lease on and may now send."""

    message_id: str
    group_id: str
    site_id: str
    recipient: str
    message: MessageAccepted
    attempts: int
    release: Release | None
    expires_at: datetime | None
    traceparent: str | None = None

    @property
    def key(self) -> Key:
        """What names this message in the ledger: its site and its id."""
        return (self.site_id, self.message_id)


@dataclass(frozen=True)
class Incoming:
    """An accepted message as taken from the outbox."""

    message: MessageAccepted
    actor: str
    correlation_id: str | None = None
    sequence: int = 0
    traceparent: str | None = None


def _keyed(m: sa.Table, keys: Collection[Key]) -> sa.ColumnElement[bool]:
    """The rows of these (site id, message id) keys."""
    return sa.tuple_(m.c.site_id, m.c.message_id).in_(sorted(keys))


def _picked(session: AsyncSession, m: sa.Table, chosen: sa.Select[Any]) -> Any:
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


def _utc(value: datetime | None) -> datetime | None:
    # SQLite returns naive datetimes; everything here is UTC.
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


class MessageQueue:
    """SQL operations on one channel's queue, each with its event in the same transaction."""

    def __init__(
        self,
        db: async_sessionmaker[AsyncSession],
        tables: DispatchTables,
        channel: str,
        *,
        owner: str,
        source: str,
    ) -> None:
        self.db = db
        self.t = tables
        self.channel = channel
        self.owner = owner
        self.source = source

    # --- events ------------------------------------------------------------------------

    async def _event(
        self,
        session: AsyncSession,
        row_group: str,
        row_site: str,
        message_id: str,
        what: str,
        data: EventData,
        actor: str | None = None,
        correlation_id: str | None = None,
    ) -> None:
        await add_event(
            session,
            self.t.pending_events,
            subject=subjects.dispatch(self.channel, row_site),  # type: ignore[arg-type]
            data=data,
            event_id=event_id(f"{row_site}\x1f{message_id}", what),
            actor=actor or f"service:{self.channel}_gateway",
            source=self.source,
            group_id=row_group,
            site_id=row_site,
            event_subject=message_id,
            correlation_id=correlation_id,
        )

    async def event(
        self, session: AsyncSession, claimed: Claimed, what: str, data: EventData
    ) -> None:
        """Queue the event of something that happened to a claimed message (in `session`)."""
        await self._event(
            session, claimed.group_id, claimed.site_id, claimed.message_id, what, data
        )

    def common(self, message_id: str, group_id: str, site_id: str) -> dict[str, Any]:
        """The fields every dispatch event carries."""
        return self._common(message_id, group_id, site_id)

    def _common(self, message_id: str, group_id: str, site_id: str) -> dict[str, Any]:
        return {
            "message_id": message_id,
            "group_id": group_id,
            "site_id": site_id,
            "channel": self.channel,
        }

    # --- intake ------------------------------------------------------------------------

    async def ingest(self, batch: Sequence[Incoming]) -> int:
        """Store accepted messages (each once, however often redelivered); returns how many
        were new. A message is its (site, message id): another site's message with the same id
        is another message, so no site's id can keep another site's message out."""
        if not batch:
            return 0
        m = self.t.messages
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            # One row per message even if a batch carries a redelivered duplicate.
            # The first of them is the one stored (and announced below).
            unique: dict[Key, Incoming] = {}
            for i in batch:
                unique.setdefault((i.message.site_id, i.message.message_id), i)
            rows = [
                {
                    "message_id": i.message.message_id,
                    "group_id": i.message.group_id,
                    "site_id": i.message.site_id,
                    "recipient": i.message.to,
                    "category": i.message.category,
                    "payload": i.message.model_dump(mode="json"),
                    "state": schema.QUEUED,
                    "attempts": 0,
                    "accepted_at": i.message.submitted_at,
                    "intake_seq": i.sequence,
                    "queued_at": now,
                    "not_before": i.message.not_before,
                    "expires_at": i.message.expires_at,
                    "traceparent": i.traceparent,
                }
                for i in unique.values()
            ]
            # In chunks of power-of-two sizes: the driver prepares and caches the multi-row
            # statement once per row count (about 1 MB each at a few hundred rows), so intake
            # batches of every size from 1 to 500 grew the gateway by hundreds of MB under
            # load. Now at most eight shapes exist. The statement is passed its rows rather
            # than built around them: SQLAlchemy compiles it once instead of on every call
            # (that compilation was an eighth of the SMS gateway's CPU in the benchmark).
            fresh: set[Key] = set()
            start = 0
            statement = insert_many_ignoring_duplicates(session, m).returning(
                m.c.site_id, m.c.message_id
            )
            while start < len(rows):
                size = 1 << min((len(rows) - start).bit_length() - 1, INGEST_CHUNK_BITS)
                inserted = await session.execute(statement, rows[start : start + size])
                fresh.update((r[0], r[1]) for r in inserted)
                start += size
            for key, item in unique.items():
                msg = item.message
                if key not in fresh:
                    continue
                await self._event(
                    session,
                    msg.group_id,
                    msg.site_id,
                    msg.message_id,
                    "queued",
                    MessageQueued(
                        **self._common(msg.message_id, msg.group_id, msg.site_id),
                        to=msg.to,
                        category=msg.category,
                        client_reference=msg.client_reference,
                        submitted_at=msg.submitted_at,
                        submitted_by=item.actor,
                    ),
                    actor=item.actor,
                    correlation_id=item.correlation_id,
                )
            return len(fresh)

    # --- claiming ------------------------------------------------------------------------

    async def claim(
        self,
        site_ids: Sequence[str],
        limit: int,
        *,
        now: datetime | None = None,
        lease: timedelta = timedelta(seconds=60),
        release: Release | None = None,
        exclude: Collection[Key] = (),
    ) -> list[Claimed]:
        """Take up to `limit` sendable messages of these sites, oldest first, under a lease."""
        if limit <= 0 or not site_ids:
            return []
        now = now or datetime.now(UTC)
        m = self.t.messages
        eligible = (
            sa.select(m.c.site_id, m.c.message_id)
            .where(
                m.c.site_id.in_(list(site_ids)),
                m.c.state == schema.QUEUED,
                sa.or_(m.c.next_attempt_at.is_(None), m.c.next_attempt_at <= now),
                sa.or_(m.c.not_before.is_(None), m.c.not_before <= now),
            )
            .order_by(m.c.accepted_at, m.c.intake_seq, m.c.message_id)
            .limit(limit)
        )
        if exclude:
            eligible = eligible.where(sa.not_(_keyed(m, exclude)))
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(m)
                .where(_picked(session, m, eligible), m.c.state == schema.QUEUED)
                .values(
                    state=schema.SENDING,
                    lease_owner=self.owner,
                    lease_until=now + lease,
                    released_by=release.model_dump(mode="json") if release else None,
                )
                .returning(
                    m.c.message_id,
                    m.c.group_id,
                    m.c.site_id,
                    m.c.recipient,
                    m.c.payload,
                    m.c.attempts,
                    m.c.accepted_at,
                    m.c.intake_seq,
                    m.c.expires_at,
                    m.c.traceparent,
                )
            )
            rows = list(result.all())
        rows.sort(key=lambda r: (_utc(r.accepted_at), r.intake_seq, r.message_id))
        return [
            Claimed(
                r.message_id,
                r.group_id,
                r.site_id,
                r.recipient,
                MessageAccepted.model_validate(r.payload),
                r.attempts,
                release,
                _utc(r.expires_at),
                r.traceparent,
            )
            for r in rows
        ]

    async def extend_lease(self, keys: Collection[Key], lease: timedelta) -> None:
        """Keep holding messages whose send is taking long."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            await session.execute(
                sa.update(m)
                .where(
                    _keyed(m, keys),
                    m.c.state == schema.SENDING,
                    m.c.lease_owner == self.owner,
                )
                .values(lease_until=datetime.now(UTC) + lease)
            )

    async def renew_leases(self, lease: timedelta, keys: Sequence[Key]) -> int:
        """Keep alive the leases of the messages this replica is still working on.

        A claimed message can wait for a send slot (or a throttle slot) longer than one lease;
        without renewal another replica — or this one's own recovery — would take it over and
        requeue it while it is still about to be sent. A crashed replica renews nothing, and
        neither does a live one for a message whose work ended without a terminal write: those
        leases run out and are reconciled.
        """
        m = self.t.messages
        renewed = 0
        until = datetime.now(UTC) + lease
        async with self.db() as session, session.begin():
            for start in range(0, len(keys), 500):
                result = await session.execute(
                    sa.update(m)
                    .where(
                        _keyed(m, keys[start : start + 500]),
                        m.c.state == schema.SENDING,
                        m.c.lease_owner == self.owner,
                    )
                    .values(lease_until=until)
                )
                renewed += int(result.rowcount or 0)  # type: ignore[attr-defined]
        return renewed

    async def take_over_expired(
        self, now: datetime, limit: int = 100, lease: timedelta = timedelta(seconds=60)
    ) -> list[Claimed]:
        """Leases left by a crashed replica: take them over (to reconcile, never to resend
        blindly)."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            stale = (
                sa.select(m.c.site_id, m.c.message_id)
                .where(m.c.state == schema.SENDING, m.c.lease_until < now)
                .limit(limit)
            )
            result = await session.execute(
                sa.update(m)
                .where(
                    _picked(session, m, stale), m.c.state == schema.SENDING, m.c.lease_until < now
                )
                .values(lease_owner=self.owner, lease_until=now + lease)
                .returning(
                    m.c.message_id,
                    m.c.group_id,
                    m.c.site_id,
                    m.c.recipient,
                    m.c.payload,
                    m.c.attempts,
                    m.c.released_by,
                    m.c.expires_at,
                )
            )
            rows = result.all()
        return [
            Claimed(
                r.message_id,
                r.group_id,
                r.site_id,
                r.recipient,
                MessageAccepted.model_validate(r.payload),
                r.attempts,
                Release.model_validate(r.released_by) if r.released_by else None,
                _utc(r.expires_at),
            )
            for r in rows
        ]

    # --- outcomes --------------------------------------------------------------------------

    async def _transition(
        self,
        session: AsyncSession,
        claimed: Claimed,
        *,
        from_states: Sequence[str],
        values: dict[str, Any],
        must_own: bool,
    ) -> bool:
        m = self.t.messages
        condition = [
            m.c.site_id == claimed.site_id,
            m.c.message_id == claimed.message_id,
            m.c.state.in_(list(from_states)),
        ]
        if must_own:
            condition.append(m.c.lease_owner == self.owner)
        result = await session.execute(sa.update(m).where(*condition).values(**values))
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def sent(
        self,
        c: Claimed,
        *,
        account: str,
        provider_message_id: str | None,
        sent_at: datetime | None = None,
        segments: int | None = None,
        cost: float | None = None,
        attempts: int = 1,
        reconciled: bool = False,
    ) -> bool:
        """The provider accepted the message: terminal `sent`."""
        sent_at = sent_at or datetime.now(UTC)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": schema.SENT,
                    "account": account,
                    "sent_at": sent_at,
                    "finished_at": sent_at,
                    "provider_message_id": provider_message_id,
                    "lease_owner": None,
                    "lease_until": None,
                    "attempts": c.attempts + attempts,
                },
            )
            if ok:
                await self._event(
                    session,
                    c.group_id,
                    c.site_id,
                    c.message_id,
                    "terminal",
                    MessageSent(
                        **self._common(c.message_id, c.group_id, c.site_id),
                        account=account,
                        provider_message_id=provider_message_id,
                        sent_at=sent_at,
                        attempts=c.attempts + attempts,
                        segments=segments,
                        cost=cost,
                        released_by=c.release,
                        reconciled=reconciled,
                    ),
                )
        return ok

    async def failed(
        self,
        c: Claimed,
        *,
        reason: str,
        provider_response: str | None = None,
        attempts: int = 1,
        permanent: bool = True,
    ) -> bool:
        """Could not be sent: terminal `failed` with the reason."""
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": schema.FAILED,
                    "finished_at": now,
                    "last_error": reason,
                    "lease_owner": None,
                    "lease_until": None,
                    "attempts": c.attempts + attempts,
                },
            )
            if ok:
                await self._event(
                    session,
                    c.group_id,
                    c.site_id,
                    c.message_id,
                    "terminal",
                    MessageFailed(
                        **self._common(c.message_id, c.group_id, c.site_id),
                        reason=reason,
                        attempts=c.attempts + attempts,
                        permanent=permanent,
                        provider_response=provider_response,
                    ),
                )
        return ok

    async def defer(
        self,
        c: Claimed,
        *,
        reason: str,
        retry_at: datetime | None,
        attempt_used: bool,
        announce: bool = True,
    ) -> bool:
        """Put a claimed message back in the queue until `retry_at` (not an outcome)."""
        attempts = c.attempts + (1 if attempt_used else 0)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": schema.QUEUED,
                    "next_attempt_at": retry_at,
                    "lease_owner": None,
                    "lease_until": None,
                    "attempts": attempts,
                    "last_error": reason if attempt_used else None,
                },
            )
            if ok and announce:
                await self._event(
                    session,
                    c.group_id,
                    c.site_id,
                    c.message_id,
                    f"deferred:{attempts}:{reason[:40]}",
                    MessageDeferred(
                        **self._common(c.message_id, c.group_id, c.site_id),
                        reason=reason,
                        retry_at=retry_at,
                        attempt=attempts,
                    ),
                )
        return ok

    async def release_unsent(self, claimed: Sequence[Claimed]) -> None:
        """Return claimed messages that were not attempted (a drain, a held account)."""
        m = self.t.messages
        async with self.db() as session, session.begin():
            await session.execute(
                sa.update(m)
                .where(
                    _keyed(m, [c.key for c in claimed]),
                    m.c.state == schema.SENDING,
                    m.c.lease_owner == self.owner,
                )
                .values(state=schema.QUEUED, lease_owner=None, lease_until=None)
            )

    async def suppressed(self, c: Claimed, *, reason: str) -> bool:
        """Not sent to an opted-out recipient (no provider call): terminal `suppressed`."""
        return await self._finish_claimed(
            c,
            schema.SUPPRESSED,
            "terminal",
            MessageSuppressed(**self._common(c.message_id, c.group_id, c.site_id), reason=reason),
        )

    async def expired(self, c: Claimed) -> bool:
        """Its time ran out before it could be sent: terminal `expired`."""
        assert c.expires_at is not None
        return await self._finish_claimed(
            c,
            schema.EXPIRED,
            "terminal",
            MessageExpired(
                **self._common(c.message_id, c.group_id, c.site_id), expires_at=c.expires_at
            ),
        )

    async def _finish_claimed(self, c: Claimed, state: str, what: str, data: EventData) -> bool:
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            ok = await self._transition(
                session,
                c,
                from_states=[schema.SENDING],
                must_own=True,
                values={
                    "state": state,
                    "finished_at": now,
                    "lease_owner": None,
                    "lease_until": None,
                },
            )
            if ok:
                await self._event(session, c.group_id, c.site_id, c.message_id, what, data)
        return ok

    async def finish_queued(
        self,
        *,
        state: str,
        where: Sequence[sa.ColumnElement[bool]],
        make_event: Any,
        actor: str | None = None,
        limit: int = 10_000,
    ) -> list[str]:
        """Terminally finish queued messages matching `where` (cancel, suppress, expire)."""
        m = self.t.messages
        now = datetime.now(UTC)
        finished: list[str] = []
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(m)
                .where(m.c.state == schema.QUEUED, *where)
                .values(state=state, finished_at=now)
                .returning(m.c.message_id, m.c.group_id, m.c.site_id)
            )
            for row in result.all()[:limit]:
                await self._event(
                    session,
                    row.group_id,
                    row.site_id,
                    row.message_id,
                    "terminal",
                    make_event(self._common(row.message_id, row.group_id, row.site_id)),
                    actor=actor,
                )
                finished.append(row.message_id)
        return finished

    async def cancel(
        self, site_id: str, message_ids: Sequence[str], *, reason: str, actor: str
    ) -> list[str]:
        """Cancel queued messages of a site by id."""
        m = self.t.messages
        return await self.finish_queued(
            state=schema.CANCELLED,
            where=[m.c.site_id == site_id, m.c.message_id.in_(list(message_ids))],
            make_event=lambda common: MessageCancelled(**common, reason=reason),
            actor=actor,
        )

    async def suppress_recipient(self, group_id: str, recipient: str, *, reason: str) -> list[str]:
        """An opt-out: every queued message of the group to this recipient ends suppressed."""
        m = self.t.messages
        return await self.finish_queued(
            state=schema.SUPPRESSED,
            where=[m.c.group_id == group_id, m.c.recipient == recipient],
            make_event=lambda common: MessageSuppressed(**common, reason=reason),
        )

    async def expire_due(self, now: datetime | None = None) -> list[str]:
        """Queued messages whose `expires_at` passed end `expired`."""
        now = now or datetime.now(UTC)
        m = self.t.messages
        rows: dict[Key, datetime] = {}
        async with self.db() as session:
            for row in await session.execute(
                sa.select(m.c.site_id, m.c.message_id, m.c.expires_at)
                .where(
                    m.c.state == schema.QUEUED, m.c.expires_at.is_not(None), m.c.expires_at <= now
                )
                .limit(1000)
            ):
                rows[(row.site_id, row.message_id)] = _utc(row.expires_at)  # type: ignore[assignment]
        if not rows:
            return []
        return await self.finish_queued(
            state=schema.EXPIRED,
            where=[_keyed(m, rows), m.c.expires_at <= now],
            make_event=lambda common: MessageExpired(
                **common, expires_at=rows[(common["site_id"], common["message_id"])]
            ),
        )

    async def requeue_failed(
        self, site_id: str, message_ids: Sequence[str], *, actor: str
    ) -> list[str]:
        """ "Reset failed": each failed message is sent again as a new message linked to it.

        A failed message keeps its one terminal event; its retry is a new message with its own
        life (and `retry_of` naming the original), so every message still ends exactly once.
        """
        m = self.t.messages
        query = sa.select(m).where(m.c.site_id == site_id, m.c.state == schema.FAILED)
        if message_ids:
            query = query.where(m.c.message_id.in_(list(message_ids)))
        now = datetime.now(UTC)
        created: list[str] = []
        async with self.db() as session:
            failed = (await session.execute(query.limit(10_000))).all()
        for row in failed:
            new_id = event_id(row.message_id, f"retry-after:{_utc(row.finished_at)}")
            payload = dict(row.payload)
            payload["message_id"] = new_id
            message = MessageAccepted.model_validate(payload)
            async with self.db() as session, session.begin():
                inserted = await session.execute(
                    insert_ignoring_duplicates(
                        session,
                        m,
                        [
                            {
                                "message_id": new_id,
                                "group_id": row.group_id,
                                "site_id": row.site_id,
                                "recipient": row.recipient,
                                "category": row.category,
                                "payload": message.model_dump(mode="json"),
                                "state": schema.QUEUED,
                                "attempts": 0,
                                "accepted_at": now,
                                "queued_at": now,
                                "not_before": None,
                                "expires_at": row.expires_at,
                            }
                        ],
                    ).returning(m.c.message_id)
                )
                if inserted.first() is None:
                    continue
                await self._event(
                    session,
                    row.group_id,
                    row.site_id,
                    new_id,
                    "queued",
                    MessageQueued(
                        **self._common(new_id, row.group_id, row.site_id),
                        to=row.recipient,
                        category=row.category,
                        client_reference=message.client_reference,
                        submitted_at=now,
                        submitted_by=actor,
                        retry_of=row.message_id,
                    ),
                    actor=actor,
                )
                created.append(new_id)
        return created

    # --- receipts ------------------------------------------------------------------------

    async def receipt(
        self,
        *,
        message_id: str | None = None,
        provider_message_id: str | None = None,
        delivered: bool,
        occurred_at: datetime,
        raw_status: str | None = None,
        reason: str = "",
        accounts: Collection[str] | None = None,
        site_id: str | None = None,
    ) -> str | None:
        """Record a delivery receipt for a sent message (first receipt wins); returns the
        message id it matched.

        `accounts`: the account(s) the receipt came through; only a message sent through one
        of them matches, so one tenant's receipt never settles another's message. `site_id`:
        the site of the message (email bounces, found in the mailbox that sent it). At most
        one message is settled, even where two sites' messages share an id."""
        m = self.t.messages
        if message_id is None and provider_message_id is None:
            return None
        condition = (
            (m.c.message_id == message_id)
            if message_id
            else (m.c.provider_message_id == provider_message_id)
        )
        conditions = [condition, m.c.state == schema.SENT, m.c.receipt.is_(None)]
        if accounts is not None:
            if not accounts:
                return None
            conditions.append(m.c.account.in_(sorted(accounts)))
        if site_id is not None:
            conditions.append(m.c.site_id == site_id)
        one = sa.select(m.c.site_id, m.c.message_id).where(*conditions).limit(1)
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.update(m)
                .where(
                    sa.tuple_(m.c.site_id, m.c.message_id).in_(one),
                    m.c.state == schema.SENT,
                    m.c.receipt.is_(None),
                )
                .values(receipt="delivered" if delivered else "undelivered")
                .returning(m.c.message_id, m.c.group_id, m.c.site_id, m.c.provider_message_id)
            )
            row = result.first()
            if row is None:
                return None
            common = self._common(row.message_id, row.group_id, row.site_id)
            data: EventData
            if delivered:
                data = MessageDelivered(
                    **common,
                    provider_message_id=row.provider_message_id,
                    occurred_at=occurred_at,
                    raw_status=raw_status,
                )
            else:
                data = MessageUndelivered(
                    **common,
                    provider_message_id=row.provider_message_id,
                    occurred_at=occurred_at,
                    reason=reason or "undelivered",
                    raw_status=raw_status,
                )
            await self._event(session, row.group_id, row.site_id, row.message_id, "receipt", data)
            return str(row.message_id)

    # --- queries ---------------------------------------------------------------------------

    async def purge_finished(self, before: datetime, limit: int = 1000) -> int:
        """Delete up to `limit` messages that ended before `before`; returns how many.

        Only terminal rows go (sent, failed, suppressed, cancelled, expired): nothing still
        queued or in flight is touched. Their events stay in `DISPATCH` and the audit trail.
        """
        m = self.t.messages
        oldest = (
            sa.select(m.c.site_id, m.c.message_id)
            .where(m.c.state.in_(sorted(schema.TERMINAL_STATES)), m.c.finished_at < before)
            .limit(limit)
        )
        async with self.db() as session, session.begin():
            result = await session.execute(
                sa.delete(m).where(
                    sa.tuple_(m.c.site_id, m.c.message_id).in_(oldest),
                    m.c.state.in_(sorted(schema.TERMINAL_STATES)),
                )
            )
        return int(result.rowcount or 0)  # type: ignore[attr-defined]

    async def depth(self, site_id: str | None = None) -> int:
        """Messages waiting (queued or being sent)."""
        m = self.t.messages
        query = sa.select(sa.func.count()).where(m.c.state.in_([schema.QUEUED, schema.SENDING]))
        if site_id is not None:
            query = query.where(m.c.site_id == site_id)
        async with self.db() as session:
            return int((await session.execute(query)).scalar() or 0)

    async def depth_by_site(self) -> dict[str, int]:
        """Waiting messages per site (metrics)."""
        m = self.t.messages
        async with self.db() as session:
            rows = await session.execute(
                sa.select(m.c.site_id, sa.func.count())
                .where(m.c.state.in_([schema.QUEUED, schema.SENDING]))
                .group_by(m.c.site_id)
            )
            return {r[0]: int(r[1]) for r in rows}

    async def sent_since(self, account: str, since: datetime) -> int:
        """Messages sent through an account since an instant (rolling daily caps)."""
        m = self.t.messages
        async with self.db() as session:
            return int(
                (
                    await session.execute(
                        sa.select(sa.func.count()).where(
                            m.c.account == account, m.c.sent_at >= since
                        )
                    )
                ).scalar()
                or 0
            )
