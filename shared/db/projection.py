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
from collections import deque
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
from shared.db.engine import sqlite_file_url
from shared.db.writer_process import WriterProcess
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


class WriterProcessProjection(Protocol):
    """A projection that can also store a batch on a synchronous connection. On a SQLite
    file the runner then commits each batch in a child process
    (`shared.db.writer_process`), on a second core; elsewhere it calls `apply` as usual.

    The child makes its own instance (`type(projection)()`, so no constructor arguments) and
    is given each batch as `prepare` returned it (so that must pickle).
    """

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
    moved: int = 0
    """Times another runner had moved the position first (this one then started over)."""
    position: int = 0
    stream_last: int = 0


async def load_position(session: AsyncSession, name: str) -> int:
    """Stored position of a projection (0 if it never ran)."""
    row = await session.execute(
        text("SELECT position FROM projection_positions WHERE projection = :n"), {"n": name}
    )
    value = row.scalar()
    return int(value) if value is not None else 0


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
        self._writer: WriterProcess | None = None

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
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    # The cancel reached a commit that had just lost its compare-and-set, so
                    # it surfaced as PositionMoved; going round again would outlive the cancel.
                    raise asyncio.CancelledError from None
                self.stats.moved += 1
                log.info(
                    "projection position moved by another runner; resuming",
                    extra={"projection": self.projection.name},
                )

    async def _run(self, *, follow: bool) -> None:
        self._writer = self._start_writer()
        try:
            await self._run_with_writer(follow=follow)
        finally:
            if self._writer is not None:
                await self._writer.close()
                self._writer = None

    def _start_writer(self) -> WriterProcess | None:
        """A writer process for this run, if the projection can use one (a SQLite file)."""
        bind = self._sessions.kw.get("bind")
        if not hasattr(self.projection, "apply_sync") or not isinstance(bind, AsyncEngine):
            return None
        url = sqlite_file_url(bind)
        if url is None:
            return None
        return WriterProcess(url, type(self.projection), commit_batch)

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
        # Stages overlap: while batch k commits, the next batch is read and prepared. A writer
        # process takes payloads strictly in order, so up to three batches may be on their way
        # to it (its compare-and-set of each old position still holds); an async transaction
        # must see the previous one committed, so there only one is outstanding.
        depth = 3 if self._writer is not None else 1
        pending: deque[asyncio.Task[tuple[int, int]]] = deque()
        try:
            async with aclosing(batches):
                async for batch in batches:
                    prepared = await self._prepare(batch)
                    while len(pending) >= depth:
                        self._after_commit(*await pending.popleft(), follow)
                    pending.append(self._start_commit(position, batch, prepared))
                    position, waiting = stream_position(batch[-1])
                    if follow and waiting == 0:
                        # Nothing more is waiting: finish now rather than when the next
                        # event arrives (readiness and `committed` hooks depend on it).
                        while pending:
                            self._after_commit(*await pending.popleft(), follow)
            while pending:
                self._after_commit(*await pending.popleft(), follow)
        finally:
            for task in pending:
                task.cancel()
            for task in pending:
                with contextlib.suppress(BaseException):
                    await task
        if not follow:
            self.caught_up.set()

    def _after_commit(self, position: int, waiting: int, follow: bool) -> None:
        """Book a committed batch: its last position, and how many events were still waiting
        in the stream after it."""
        self.stats.position = position
        LAG.labels(self.projection.name).set(waiting)
        if follow and not self.caught_up.is_set() and waiting == 0:
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

    def _start_commit(
        self, position: int, batch: list[Msg], prepared: tuple[list[Any], list[DeadLetter]]
    ) -> asyncio.Task[tuple[int, int]]:
        """Start committing a batch after `position`; the task returns the batch's last
        position and the events still waiting after it. A writer process is sent the batch
        at once, so batches reach it in the order they were started."""
        events, dead = prepared
        new_position, waiting = stream_position(batch[-1])
        move = {
            "new": new_position,
            "old": position,
            "n": self.projection.name,
            "t": datetime.now(UTC),
        }
        written = self._writer.submit((move, events)) if self._writer is not None else None
        return asyncio.create_task(self._finish_batch(move, events, dead, written, waiting))

    async def _finish_batch(
        self,
        move: dict[str, Any],
        events: list[Any],
        dead: list[DeadLetter],
        written: asyncio.Future[bool] | None,
        waiting: int,
    ) -> tuple[int, int]:
        if written is not None:
            if not await written:
                raise PositionMoved(self.projection.name)
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
        return move["new"], waiting


def commit_batch(
    engine: Engine, projection: WriterProcessProjection, payload: tuple[dict[str, Any], list[Any]]
) -> bool:
    """A batch's transaction in the writer process: move the position (compare-and-set), then
    apply. False, with nothing written, if another runner moved the position first."""
    move, events = payload
    with engine.begin() as conn:
        if conn.execute(_MOVE_POSITION, move).rowcount != 1:
            return False
        if events:
            projection.apply_sync(conn, events)
    return True
