"""Projections: apply a stream's events to SQL read models, exactly once.

The runner applies a batch of events and moves the projection's stored position in the same
transaction, guarded by compare-and-set on the old position. A crash before the commit loses
the whole batch (it is re-read from the stream after restart); a crash after it loses nothing.
Two runners on one database (replicas) cannot both apply a batch: the loser's compare-and-set
fails, it rolls back and continues from the winner's position.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from nats.aio.client import Client
from nats.aio.msg import Msg
from prometheus_client import Gauge
from sqlalchemy import Connection, Engine, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from shared.bus.deadletter import DeadLetter, publish_dead_letters
from shared.db.engine import sqlite_writer
from shared.events.codec import UndecodableEvent, decode
from shared.events.envelope import Envelope
from shared.events.registry import EventRegistry, registry
from shared.eventstore import next_matching_sequence, replay_batches, stream_position

log = logging.getLogger(__name__)

LAG = Gauge(
    "stagger_projection_lag_events",
    "Events in the stream not yet applied by a projection (last sequence - position)",
    ["projection"],
)


class Projection(Protocol):
    """A read model fed by one stream."""

    name: str
    stream: str
    filter_subject: str | None

    async def apply(self, session: AsyncSession, events: Sequence[Envelope]) -> None:
        """Apply events (in stream order) inside the caller's transaction."""


class RefusingProjection(Projection, Protocol):
    """A projection that names events it cannot apply; the runner dead-letters them."""

    def refuse(self, event: Envelope) -> str | None:
        """Why `event` cannot be applied (e.g. an id too long for its column), or None."""


class RawProjection(Protocol):
    """A projection given the raw JetStream messages (set `wants_raw_messages = True`)."""

    name: str
    stream: str
    filter_subject: str | None
    wants_raw_messages: bool

    async def apply(self, session: AsyncSession, events: Sequence[Msg]) -> None:
        """Apply raw messages (in stream order) inside the caller's transaction."""


_Prepared = TypeVar("_Prepared")


class PreparingProjection(Protocol[_Prepared]):
    """A raw projection that turns each batch of messages into rows before its transaction
    (`prepare` runs while the previous batch commits); `apply` gets what `prepare` returned."""

    name: str
    stream: str
    filter_subject: str | None
    wants_raw_messages: bool

    async def prepare(
        self, sessions: async_sessionmaker[AsyncSession], events: Sequence[Msg]
    ) -> list[_Prepared]:
        """Rows for a batch of raw messages (nothing written yet)."""

    async def apply(self, session: AsyncSession, events: Sequence[_Prepared]) -> None:
        """Store prepared rows (in stream order) inside the caller's transaction."""


class ThreadedProjection(Protocol):
    """A projection that can also store a batch on a synchronous connection. On SQLite the
    runner then commits each batch in a worker thread (`shared.db.engine.sqlite_writer`),
    free of the event loop's turns; elsewhere it calls `apply` as usual."""

    def apply_sync(self, conn: Connection, events: Sequence[Any]) -> None:
        """What `apply` does, on a synchronous connection, inside the runner's transaction."""


class NotifyingProjection(Projection, Protocol):
    """A projection that also wants to act once its rows are committed (e.g. wake a timer)."""

    async def committed(self, events: Sequence[Envelope]) -> None:
        """Called after the batch's transaction committed; must not fail."""


_MOVE_POSITION = text(
    "UPDATE projection_positions SET position = :new, updated_at = :t "
    "WHERE projection = :n AND position = :old"
)


class PositionMoved(Exception):
    """Another runner advanced the projection first."""


@dataclass
class ProjectionStats:
    """What a runner did, for health, metrics and benchmarks."""

    applied: int = 0
    dead_lettered: int = 0
    position: int = 0
    stream_last: int = 0


async def load_position(session: AsyncSession, name: str) -> int:
    """Stored position of a projection (0 if it never ran)."""
    row = await session.execute(
        text("SELECT position FROM projection_positions WHERE projection = :n"), {"n": name}
    )
    value = row.scalar()
    return int(value) if value is not None else 0


async def reset_position(session: AsyncSession, name: str) -> None:
    """Forget a projection's position (used together with dropping its rows for a rebuild)."""
    await session.execute(
        text("DELETE FROM projection_positions WHERE projection = :n"), {"n": name}
    )


class ProjectionRunner:
    """Feeds one projection from its stream, live or up to the current end."""

    def __init__(
        self,
        nc: Client,
        sessions: async_sessionmaker[AsyncSession],
        projection: Projection | RawProjection | PreparingProjection[Any],
        *,
        batch_size: int = 500,
        lenient: bool = False,
        events: EventRegistry = registry,
    ) -> None:
        self._nc = nc
        self._sessions = sessions
        self.projection = projection
        self._batch_size = batch_size
        self._lenient = lenient
        self._events = events
        self.stats = ProjectionStats()
        self.caught_up = asyncio.Event()
        self._last_pending = -1
        self._writer: Engine | None = None

    async def position(self) -> int:
        """The projection's stored position."""
        async with self._sessions() as session:
            return await load_position(session, self.projection.name)

    async def catch_up(self) -> ProjectionStats:
        """Apply everything in the stream now, then return."""
        await self._run(follow=False)
        return self.stats

    async def run(self) -> None:
        """Apply events as they arrive until cancelled."""
        while True:
            try:
                await self._run(follow=True)
            except PositionMoved:
                log.info(
                    "projection position moved by another runner; resuming",
                    extra={"projection": self.projection.name},
                )

    async def _run(self, *, follow: bool) -> None:
        bind = self._sessions.kw.get("bind")
        if hasattr(self.projection, "apply_sync") and isinstance(bind, AsyncEngine):
            self._writer = sqlite_writer(bind)
        try:
            await self._run_with_writer(follow=follow)
        finally:
            if self._writer is not None:
                self._writer.dispose()
                self._writer = None

    async def _run_with_writer(self, *, follow: bool) -> None:
        position = await self._ensure_position()
        self.stats.position = position
        reset = getattr(self.projection, "reset", None)
        if reset is not None:
            reset()
        if follow:
            await self._mark_caught_up_if_at_end(position)
        batches = replay_batches(
            self._nc,
            self.projection.stream,
            filter_subject=self.projection.filter_subject,
            from_sequence=position + 1,
            follow=follow,
            max_batch=self._batch_size,
        )
        # Two stages: while batch k commits (the database works in its own thread), batch
        # k+1 is read and prepared. Commits stay strictly in order.
        committing: asyncio.Task[int] | None = None
        try:
            async with aclosing(batches):
                async for batch in batches:
                    prepared = await self._prepare(batch)
                    if committing is not None:
                        position = await committing
                        self._after_commit(position, follow)
                    committing = asyncio.create_task(self._apply_batch(position, batch, prepared))
                    if follow and stream_position(batch[-1])[1] == 0:
                        # Nothing more is waiting: finish now rather than when the next
                        # event arrives (readiness and `committed` hooks depend on it).
                        position = await committing
                        self._after_commit(position, follow)
                        committing = None
            if committing is not None:
                position = await committing
                self._after_commit(position, follow)
                committing = None
        finally:
            if committing is not None and not committing.done():
                committing.cancel()
                with contextlib.suppress(BaseException):
                    await committing
        if not follow:
            self.caught_up.set()

    def _commit_in_thread(self, writer: Engine, move: dict[str, Any], events: list[Any]) -> None:
        """`_apply_batch`'s transaction on the SQLite writer (runs in a worker thread)."""
        projection: ThreadedProjection = self.projection  # type: ignore[assignment]
        with writer.begin() as conn:
            if conn.execute(_MOVE_POSITION, move).rowcount != 1:
                raise PositionMoved(self.projection.name)
            if events:
                projection.apply_sync(conn, events)

    def _after_commit(self, position: int, follow: bool) -> None:
        self.stats.position = position
        if self._last_pending >= 0:
            LAG.labels(self.projection.name).set(self._last_pending)
        if follow and not self.caught_up.is_set() and self._last_pending == 0:
            self.caught_up.set()

    async def _mark_caught_up_if_at_end(self, position: int) -> None:
        js = self._nc.jetstream()
        info = await js.stream_info(self.projection.stream)
        self.stats.stream_last = info.state.last_seq
        if position >= info.state.last_seq:
            self.caught_up.set()
            return
        if self.projection.filter_subject:
            # Nothing left that matches the filter also counts as caught up.
            pending = await next_matching_sequence(
                js, self.projection.stream, position + 1, self.projection.filter_subject
            )
            if pending is None:
                self.caught_up.set()

    async def _ensure_position(self) -> int:
        async with self._sessions() as session, session.begin():
            # Insert-if-missing before reading: a write first, so SQLite takes its lock at once.
            await session.execute(
                text(
                    "INSERT INTO projection_positions (projection, position, updated_at) "
                    "VALUES (:n, 0, :t) ON CONFLICT (projection) DO NOTHING"
                ),
                {"n": self.projection.name, "t": datetime.now(UTC)},
            )
            return await load_position(session, self.projection.name)

    async def _prepare(self, batch: list[Msg]) -> tuple[list[Any], list[DeadLetter]]:
        """Decode a batch (or let a raw projection prepare it) before its transaction."""
        dead: list[DeadLetter] = []
        prepare = getattr(self.projection, "prepare", None)
        if getattr(self.projection, "wants_raw_messages", False):
            # The projection reads headers and bytes itself (the audit trail keeps what was
            # written, byte for byte, and skips typed decoding for speed).
            prepared: Any = await prepare(self._sessions, batch) if prepare else batch
            return prepared, dead
        events: list[Any] = []
        refuse = getattr(self.projection, "refuse", None)
        for msg in batch:
            try:
                event = decode(
                    msg.headers,
                    msg.data,
                    stream=self.projection.stream,
                    sequence=stream_position(msg)[0],
                    nats_subject=msg.subject,
                    lenient=self._lenient,
                    events=self._events,
                )
                # A projection may refuse an event its tables cannot hold (dead-lettered too).
                problem = refuse(event) if refuse is not None else None
                if problem:
                    raise UndecodableEvent(problem)
                events.append(event)
            except UndecodableEvent as exc:
                dead.append(DeadLetter.from_msg(msg, self.projection.name, str(exc)))
        return events, dead

    async def _apply_batch(
        self, position: int, batch: list[Msg], prepared: tuple[list[Any], list[DeadLetter]]
    ) -> int:
        events, dead = prepared
        self._last_pending = stream_position(batch[-1])[1]
        new_position = stream_position(batch[-1])[0]
        move = {
            "new": new_position,
            "old": position,
            "n": self.projection.name,
            "t": datetime.now(UTC),
        }
        if self._writer is not None:
            await asyncio.to_thread(self._commit_in_thread, self._writer, move, events)
        else:
            async with self._sessions() as session, session.begin():
                # Moving the position first takes the write lock before anything is read, and
                # tells at once whether another runner got here first.
                result = await session.execute(_MOVE_POSITION, move)
                if result.rowcount != 1:  # type: ignore[attr-defined]
                    raise PositionMoved(self.projection.name)
                if events:
                    await self.projection.apply(session, events)
        if dead:
            await publish_dead_letters(self._nc, dead)
            self.stats.dead_lettered += len(dead)
        self.stats.applied += len(events)
        committed = getattr(self.projection, "committed", None)
        if committed is not None and events:
            try:
                await committed(events)
            except Exception:
                log.exception(
                    "projection's after-commit hook failed",
                    extra={"projection": self.projection.name},
                )
        return new_position
