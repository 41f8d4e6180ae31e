"""Alert state as a projection, and the queries the notifier and the dashboard make.

`AlertProjection` follows one stream (PROVIDERS or DEADLETTER): each batch's signals are
stepped through `domain.alerts` against the stored states, and the changes are written —
the states and one outbox row per transition — in the runner's transaction, together with
the projection's position. A restart therefore neither loses nor repeats a transition, and
a replay from the start decides the same ones.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from services.config.adapters.alert_tables import alert_emails, alert_outbox, alert_states
from services.config.adapters.batch_tables import batch_messages
from services.config.domain.alerts import (
    AlertState,
    Condition,
    Signal,
    Transition,
    signals_of,
    step,
)
from shared.events.envelope import Envelope, new_event_id
from shared.events.schemas.alerts import AlertCondition

# The staff accounts' table, named here rather than imported (the staff package builds on the
# adapters, not the other way round); only the columns read.
users = sa.table(
    "staff_users",
    sa.column("email", sa.String),
    sa.column("group_id", sa.String),
    sa.column("role", sa.String),
    sa.column("status", sa.String),
)

STALE = timedelta(hours=24)
"""A transition caused by an older event (the first run over a long history) updates the
state the dashboard shows but is not published or emailed: nobody needs last month's news."""


class AlertProjection:
    """Decides alerts from one stream's events (see the module's docstring)."""

    filter_subject: str | None = None

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.name = f"config.alerts.{stream.lower()}"
        self.changed = asyncio.Event()
        """Set after a batch that queued transitions committed (wakes the notifier)."""
        self._queued = False

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        """Step every signal of the batch; store changed states and queued transitions."""
        self._queued = await decide(
            session,
            [(event.id, event.time, signal) for event in events for signal in signals_of(event)],
        )

    async def committed(self, events: Sequence[Envelope]) -> None:
        """Wake the notifier once a batch with transitions is stored."""
        if self._queued:
            self.changed.set()


async def decide(
    session: AsyncSession, items: Sequence[tuple[str | None, datetime, Signal]]
) -> bool:
    """Step each (cause event id, its time, signal) against the stored states inside the
    caller's transaction: store changed states and queue each transition (those caused by
    events older than `STALE` only change the state). True when something was queued."""
    if not items:
        return False
    now = datetime.now(UTC)
    states = await _load(session, {signal.condition for _, _, signal in items})
    changed: set[Condition] = set()
    raised: set[Condition] = set()
    # The newest dead letter of each raised dead-letter condition: its alert clears once the
    # consumer has been quiet for a while (`handlers/alert_dead_letters.py`).
    seen: dict[Condition, datetime] = {}
    queued: list[dict[str, Any]] = []
    for cause, at, signal in items:
        condition = signal.condition
        before = states.get(condition, AlertState())
        after, transition = step_with_id(before, signal)
        if after != before:
            states[condition] = after
            changed.add(condition)
        if condition.kind == "dead_letters" and after.active:
            seen[condition] = max(at.astimezone(UTC), seen.get(condition, at.astimezone(UTC)))
        if transition is None:
            continue
        if transition.kind == "raised":
            raised.add(condition)
        if at >= now - STALE:
            queued.append(_outbox_row(transition, cause, now))
    for condition in changed:
        await _store(session, condition, states[condition], now, condition in raised)
    for condition, at in seen.items():
        # `updated_at` of a raised dead-letter alert: when the newest dead letter was recorded.
        await session.execute(
            sa.update(alert_states).where(_key_filter(condition)).values(updated_at=at)
        )
    if queued:
        await session.execute(sa.insert(alert_outbox), queued)
    return bool(queued)


def step_with_id(state: AlertState, signal: Signal) -> tuple[AlertState, Transition | None]:
    """`domain.alerts.step` with a fresh alert id (used only when the step raises)."""
    return step(state, signal, new_event_id())


def _key_filter(condition: Condition) -> Any:
    return sa.and_(
        alert_states.c.group_id == condition.group_id,
        alert_states.c.kind == condition.kind,
        alert_states.c.key == condition.key,
    )


async def _load(session: AsyncSession, conditions: set[Condition]) -> dict[Condition, AlertState]:
    found: dict[Condition, AlertState] = {}
    for condition in conditions:
        row = (await session.execute(sa.select(alert_states).where(_key_filter(condition)))).first()
        if row is not None:
            found[condition] = AlertState(
                active=row.active,
                alert_id=row.alert_id,
                site_id=row.site_id,
                summary=row.summary,
                topup_url=row.topup_url,
                threshold=row.threshold,
            )
    return found


async def _store(
    session: AsyncSession, condition: Condition, state: AlertState, now: datetime, raised: bool
) -> None:
    values: dict[str, Any] = {
        "active": state.active,
        "alert_id": state.alert_id,
        "site_id": state.site_id,
        "summary": state.summary,
        "topup_url": state.topup_url,
        "threshold": state.threshold,
        "updated_at": now,
    }
    if raised:
        values["raised_at"] = now
    result = await session.execute(
        sa.update(alert_states).where(_key_filter(condition)).values(**values)
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        await session.execute(
            sa.insert(alert_states).values(
                group_id=condition.group_id, kind=condition.kind, key=condition.key, **values
            )
        )


def _outbox_row(transition: Transition, cause: str | None, now: datetime) -> dict[str, Any]:
    return {
        "event_id": new_event_id(),
        "group_id": transition.condition.group_id,
        "alert_id": transition.alert_id,
        "transition": transition.kind,
        "kind": transition.condition.kind,
        "key": transition.condition.key,
        "site_id": transition.site_id,
        "summary": transition.summary,
        "topup_url": transition.topup_url,
        "cause_event_id": cause,
        "created_at": now,
    }


# --- what the notifier reads and writes ----------------------------------------------------


@dataclass(frozen=True)
class Pending:
    """An alert event not yet published or not yet emailed to every admin."""

    event_id: str
    group_id: str
    alert_id: str
    transition: str
    kind: str
    key: str
    site_id: str | None
    summary: str
    topup_url: str | None
    cause_event_id: str | None
    created_at: datetime
    published: bool


class AlertStore:
    """The outbox, the emails sent, the group admins and the active alerts."""

    def __init__(self, db: async_sessionmaker[AsyncSession]) -> None:
        self.db = db

    async def decide(self, signals: Sequence[Signal]) -> bool:
        """Step signals that no stream event caused (the batch-late check) in a transaction
        of their own; True when a transition was queued."""
        now = datetime.now(UTC)
        async with self.db() as session, session.begin():
            return await decide(session, [(None, now, signal) for signal in signals])

    async def waiting_batches(self, limit: int = 500) -> list[str]:
        """Batches with messages not yet ended (newest first, at most `limit`)."""
        m = batch_messages
        async with self.db() as session:
            rows = await session.execute(
                sa.select(m.c.batch_id)
                .where(m.c.batch_id.is_not(None), m.c.state.in_(("accepted", "queued")))
                .group_by(m.c.batch_id)
                .order_by(sa.func.max(m.c.updated_at).desc())
                .limit(limit)
            )
            return [r[0] for r in rows]

    async def raised_keys(self, kind: str) -> list[tuple[str, str]]:
        """(group, key) of every raised alert of one kind."""
        s = alert_states
        async with self.db() as session:
            rows = await session.execute(
                sa.select(s.c.group_id, s.c.key).where(s.c.kind == kind, s.c.active.is_(True))
            )
            return [(r[0], r[1]) for r in rows]

    async def raised_since(
        self, kind: AlertCondition
    ) -> list[tuple[Condition, str | None, datetime]]:
        """Every raised alert of one kind: its condition, site and `updated_at` (for a
        dead-letter alert, when the newest dead letter was recorded)."""
        s = alert_states
        async with self.db() as session:
            rows = await session.execute(
                sa.select(s.c.group_id, s.c.key, s.c.site_id, s.c.updated_at).where(
                    s.c.kind == kind, s.c.active.is_(True)
                )
            )
            return [
                (Condition(r.group_id, kind, r.key), r.site_id, _utc(r.updated_at)) for r in rows
            ]

    async def pending(self, limit: int = 100, waiting: Sequence[str] = ()) -> list[Pending]:
        """Alert events still to publish or to email, oldest first; the emails of `waiting`
        groups (their mail was refused a moment ago) are left out, so they do not crowd
        out every other group's."""
        o = alert_outbox
        to_email: sa.ColumnElement[bool] = o.c.emailed_at.is_(None)
        if waiting:
            to_email = to_email & o.c.group_id.not_in(list(waiting))
        async with self.db() as session:
            rows = await session.execute(
                sa.select(o)
                .where(to_email | o.c.published_at.is_(None))
                .order_by(o.c.created_at, o.c.event_id)
                .limit(limit)
            )
            return [
                Pending(
                    event_id=r.event_id,
                    group_id=r.group_id,
                    alert_id=r.alert_id,
                    transition=r.transition,
                    kind=r.kind,
                    key=r.key,
                    site_id=r.site_id,
                    summary=r.summary,
                    topup_url=r.topup_url,
                    cause_event_id=r.cause_event_id,
                    created_at=r.created_at,
                    published=r.published_at is not None,
                )
                for r in rows
            ]

    async def mark(self, event_id: str, column: str) -> None:
        """Note that an outbox event was published (`published_at`) or emailed (`emailed_at`)."""
        async with self.db() as session, session.begin():
            await session.execute(
                sa.update(alert_outbox)
                .where(alert_outbox.c.event_id == event_id)
                .values({column: datetime.now(UTC)})
            )

    async def emailed(self, event_id: str) -> set[str]:
        """Who has been emailed about an alert event."""
        async with self.db() as session:
            rows = await session.execute(
                sa.select(alert_emails.c.recipient).where(alert_emails.c.event_id == event_id)
            )
            return {r[0] for r in rows}

    async def record_email(self, event_id: str, recipient: str, via: str) -> None:
        """Remember that `recipient` has the email about `event_id`."""
        async with self.db() as session, session.begin():
            await session.execute(
                sa.insert(alert_emails).values(
                    event_id=event_id, recipient=recipient, via=via, sent_at=datetime.now(UTC)
                )
            )

    async def group_admins(self, group_id: str) -> list[str]:
        """Email addresses of the group's active group admins."""
        async with self.db() as session:
            rows = await session.execute(
                sa.select(users.c.email)
                .where(
                    users.c.group_id == group_id,
                    users.c.role == "group_admin",
                    users.c.status == "active",
                )
                .order_by(users.c.email)
            )
            return [r[0] for r in rows]

    async def active(self, group_id: str) -> list[dict[str, Any]]:
        """The group's raised alerts, newest first."""
        s = alert_states
        async with self.db() as session:
            rows = await session.execute(
                sa.select(s.c.kind, s.c.key, s.c.site_id, s.c.summary, s.c.topup_url, s.c.raised_at)
                .where(s.c.group_id == group_id, s.c.active.is_(True))
                .order_by(s.c.raised_at.desc(), s.c.kind, s.c.key)
            )
            found = [dict(r._mapping) for r in rows]
        for alert in found:
            if alert["raised_at"] is not None:
                alert["raised_at"] = _utc(alert["raised_at"])
        return found


def _utc(at: datetime) -> datetime:
    """A stored time as UTC (SQLite keeps no zone: stored as UTC)."""
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at
