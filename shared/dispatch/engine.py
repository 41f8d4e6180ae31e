"""The delivery engine a gateway runs: intake, ticks, sending, recovery, commands.

- **Intake**: the gateway's durable consumer on `outbox.<channel>.>` stores accepted messages
  in its SQL queue (each once), then acknowledges them.
- **Ticks**: one replica gets each tick; it claims up to the tick's budget of that site's (or
  that account's sites') oldest sendable messages under a lease, checks opt-outs and quiet
  hours, reserves slots from the account's hard limiter, and sends them `spacing` apart.
- **Outcomes**: every message ends in exactly one terminal state, written with its event in the
  same transaction; transient provider errors are retried with back-off (bounded).
- **Recovery**: a lease left by a crashed replica is taken over and the send reconciled with the
  provider — never resent blindly.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import nats.errors
from faststream.middlewares import AckPolicy
from faststream.nats import JStream, NatsBroker, NatsMessage, PullSub
from nats.aio.msg import Msg
from prometheus_client import Counter, Gauge, Histogram
from pydantic import ValidationError

from shared import tracing
from shared.bus import outbox_ids, subjects
from shared.bus.deadletter import DeadLetter, publish_dead_letters
from shared.bus.rpc import BadRequest, raw_body, request_object
from shared.bus.topology import CONSUMERS_BY_NAME, CONTROL, TICKS
from shared.dispatch.adapter import AccountLimitsSpec, ChannelAdapter, SendResult, Verdict
from shared.dispatch.limits import AccountLimits
from shared.dispatch.outcomes import SentRecorder
from shared.dispatch.pending_events import EventRelay
from shared.dispatch.queue import Claimed, Incoming, Key, MessageQueue
from shared.dispatch.schema import DispatchTables
from shared.domain.throttle import backoff_delay
from shared.events.codec import MSG_ID, UndecodableEvent, decode
from shared.events.schemas.control import CancelRequested, ResetFailedRequested
from shared.events.schemas.dispatch import Release
from shared.events.schemas.messages import MessageAccepted
from shared.events.schemas.ticks import TickIssued
from shared.eventstore import stream_position
from shared.runtime.service import ServiceContext
from shared.sites import SiteDirectory

log = logging.getLogger(__name__)

SENT = Counter("stagger_sends_total", "Messages handed to a provider", ["channel"])
FAILURES = Counter(
    "stagger_send_failures_total", "Provider refusals and errors", ["channel", "kind"]
)
OUTCOMES = Counter("stagger_terminal_total", "Terminal outcomes", ["channel", "outcome"])
THROTTLE_WAIT = Histogram(
    "stagger_throttle_wait_seconds",
    "Wait for a send slot",
    ["channel"],
    buckets=(0, 0.01, 0.1, 0.5, 1, 5, 20, 60, 300),
)
TICKS_SEEN = Counter("stagger_ticks_total", "Ticks taken", ["channel", "result"])
TICK_LAG = Histogram(
    "stagger_tick_start_lag_seconds",
    "Tick start minus its scheduled instant",
    ["channel"],
    buckets=(0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
)
STALL = timedelta(milliseconds=100)
"""A send later than this (or than one interval of its account, if longer) for its slot takes a
fresh one: each late send crowds the next slots, so one interval late is the most that still
keeps an account within one send of its rate in any window."""
QUEUE_DEPTH = Gauge("stagger_queue_depth", "Messages waiting", ["channel", "site"])


@dataclass
class EngineSettings:
    """Knobs of the delivery engine (a gateway's settings class fills them)."""

    lease_seconds: float = 60.0
    recovery_seconds: float = 5.0
    expiry_seconds: float = 30.0
    parallel_sends: int = 16
    tick_workers: int = 8
    max_attempts: int = 5
    retry_base_seconds: float = 2.0
    retry_cap_seconds: float = 300.0
    intake_batch: int = 500
    intake_attempts: int = 5
    """Deliveries of an accepted message that fails to be stored for a reason other than its
    content (an unknown site, a database error) before it is dead-lettered with the reason."""
    intake_retry_seconds: float = 2.0
    """Wait before such a message is delivered again."""
    retention_days: float = 90.0
    """Finished messages older than this leave the ledger (0: kept for ever)."""


@dataclass
class _Arrivals:
    """One intake's news: set once its messages are stored, with the sites they are for."""

    event: asyncio.Event = field(default_factory=asyncio.Event)
    sites: set[str] = field(default_factory=set)


@dataclass
class _TickRun:
    tick: TickIssued
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    launched: set[Key] = field(default_factory=set)
    # Spaced ticks: when the previous send of this tick started, so that a send that started
    # late (a slow claim, a busy database) does not bring the next one closer than the spacing.
    last_start: datetime | None = None
    order: asyncio.Lock = field(default_factory=asyncio.Lock)
    # Launched sends whose provider call has not ended yet, and a signal each time one ends.
    calling: set[asyncio.Task[Any]] = field(default_factory=set)
    called: asyncio.Event = field(default_factory=asyncio.Event)
    # Launched sends still waiting for a send slot.
    slotless: set[asyncio.Task[Any]] = field(default_factory=set)
    # Spaced site ticks: the limiter key that keeps the site's spacing across consecutive
    # ticks and replicas (a cycle that ran late must not put its last send next to the
    # first send of the next cycle).
    pace: str | None = None

    def began(self, at: datetime | None) -> None:
        """A send of this tick reached its provider call at `at`, which can be later than the
        engine handed it over (an adapter that sends from another process, one that had to
        start first): the next send keeps the spacing from there."""
        if at is not None and self.last_start is not None and at > self.last_start:
            self.last_start = at

    def call_ended(self, task: asyncio.Task[Any] | None) -> None:
        """`task`'s provider call is over, or it ended without one (idempotent)."""
        if task in self.calling:
            self.calling.discard(task)
            self.called.set()

    async def keep_spacing(
        self, spacing: timedelta, pause: Callable[[float], Awaitable[bool]]
    ) -> bool:
        """Wait until `spacing` has passed since the previous send of this tick started;
        False if `pause` was cut short (the replica is draining)."""
        if spacing <= timedelta(0):
            return True
        async with self.order:
            if self.last_start is not None:
                gap = (self.last_start + spacing - datetime.now(UTC)).total_seconds()
                if gap > 0 and not await pause(gap):
                    return False
            self.last_start = datetime.now(UTC)
            return True


SHORT_TICK_SECONDS = 5.0
"""An account tick whose window is at most this long keeps taking newly arrived messages
until its window ends (a longer one would tie up a tick worker)."""

SHORT_PAUSE_SECONDS = 0.05
"""A pause this short is slept through even if draining starts meanwhile."""

COMMAND_ATTEMPTS = 3
"""Deliveries of an operator command that fails before it is dead-lettered."""


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("a spaced send failed", exc_info=task.exception())


def pace_key(site_id: str) -> str:
    """The limiter row that paces one site's spaced sends (fits the 64-character key)."""
    key = f"site:{site_id}"
    if len(key) <= 64:
        return key
    return "site#" + hashlib.sha256(site_id.encode()).hexdigest()[:40]


def _fits(value: str, length: int) -> bool:
    return 0 < len(value) <= length and value.isprintable()


def _command_problem(data: Any) -> str | None:
    """Why a decoded cancel or reset-failed command cannot be applied, or None."""
    if not isinstance(data, CancelRequested | ResetFailedRequested):
        return None
    bad = [i for i in data.message_ids if not _fits(i, 64)]
    if bad:
        return f"message_ids {bad[:3]!r} are not message ids (1-64 printable characters)"
    try:
        subjects.check_token(data.site_id, "site id")
    except subjects.InvalidToken as exc:
        return str(exc)
    return None


def _deliveries(msg: Msg) -> int:
    try:
        return int(msg.metadata.num_delivered)
    except Exception:  # not a JetStream message: nothing to retry with
        return 1 << 30


def _envelope_problem(msg: Msg, message: MessageAccepted) -> str | None:
    """Why the subject or `Nats-Msg-Id` of an accepted message disagree with its data, or None.

    Producers are allowed onto their own sites' subjects only; a message that names another
    site in its data, or carries another site's de-duplication id, is someone else's message.
    """
    site = outbox_ids.site_of(msg.subject)
    if site != message.site_id:
        return f"subject {msg.subject} is not the outbox of site {message.site_id} (its site_id)"
    dedup = (msg.headers or {}).get(MSG_ID) or ""
    # JetStream de-duplicates the whole stream by this header; the config service sends
    # `<site>:<message id>`. One naming another site is an attempt to make JetStream drop that
    # site's message as a duplicate. (A header without a site prefix is a producer's own.)
    named = outbox_ids.site_of_msg_id(dedup)
    if named is not None and named != message.site_id:
        return (
            f"Nats-Msg-Id {dedup[:140]!r} names another site than {message.site_id} "
            "(expected <site>:<message id>)"
        )
    return None


def _tick_problem(tick: TickIssued) -> str | None:
    """Why a decoded tick cannot be used, or None."""
    naive = [
        name
        for name in ("scheduled_at", "not_before", "not_after")
        if getattr(tick, name).tzinfo is None
    ]
    if naive:
        return f"{', '.join(naive)} without a time zone"
    if tick.not_before > tick.not_after:
        return "not_before is after not_after"
    if tick.budget < 0:
        return f"negative budget {tick.budget}"
    if not 0 <= tick.spacing_seconds <= 86_400:
        return f"spacing_seconds {tick.spacing_seconds} is not between 0 and 86400"
    return None


class DispatchEngine:
    """Runs one channel's delivery inside a gateway service."""

    def __init__(
        self,
        *,
        channel: str,
        adapter: ChannelAdapter,
        tables: DispatchTables,
        settings: EngineSettings | None = None,
    ) -> None:
        self.channel = channel
        self.adapter = adapter
        self.tables = tables
        self.settings = settings or EngineSettings()
        self.draining = False
        self._drain_started = asyncio.Event()
        # Messages this replica claimed and is still working on: only their leases are renewed.
        # A row whose work ended without a terminal write (a crash of the task, a database
        # error) must not be kept alive for as long as the process lives: its lease runs out
        # and recovery reconciles it with the provider.
        self._held: set[Key] = set()
        self._inflight: set[asyncio.Task[Any]] = set()
        # Set (and replaced) whenever intake stores messages: a short tick waiting for work
        # wakes on it.
        self._arrivals = _Arrivals()
        self._send_slots = asyncio.Semaphore(self.settings.parallel_sends)
        # How long a provider call takes lately (moving average, seconds): how far ahead
        # limiter slots may be reserved before they would go stale.
        self._send_seconds: float | None = None
        # Sends started but not yet recorded, per account: the daily cap counts them too,
        # or a batch claimed at once would pass the cap check before any of it is recorded.
        # A lock per account makes "read the count, check, add one" atomic against the
        # subtraction after a send is recorded (a read that began before that commit is stale).
        self._unrecorded: dict[str, int] = {}
        self._cap_locks: dict[str, asyncio.Lock] = {}
        self.queue: MessageQueue
        self.limits: AccountLimits
        self.relay: EventRelay
        self.recorder: SentRecorder
        self.sites: SiteDirectory
        self._ctx: ServiceContext

    # --- wiring ------------------------------------------------------------------------

    def register(self, broker: NatsBroker) -> None:
        """Declare the engine's FastStream subscribers (before the broker starts)."""
        channel = self.channel
        outbox = CONSUMERS_BY_NAME[f"{channel}-outbox"]
        ticks = CONSUMERS_BY_NAME[f"{channel}-ticks"]
        control = CONSUMERS_BY_NAME[f"{channel}-control"]

        # Intake (`outbox.<channel>.>`) is not a FastStream subscriber: FastStream 0.7.8's batch
        # pull loop catches only nats-py's own TimeoutError, but nats-py 2.16's fetch can raise
        # the plain asyncio one, which crashes the loop and drops the batch it was collecting
        # (redelivered only after the consumer's ack wait). See `_intake_loop`.
        self._outbox_spec = outbox

        @broker.subscriber(
            ticks.filter_subject,
            stream=JStream(TICKS, declare=False),
            durable=ticks.durable,
            config=ticks.config(),
            pull_sub=PullSub(batch_size=1, timeout=1.0),
            ack_policy=AckPolicy.MANUAL,
            decoder=raw_body,  # the handler decodes (and dead-letters) the raw message itself
            max_workers=self.settings.tick_workers,
            title=f"{channel}-gateway ticks",
            description="Permissions to send (stagger.tick.issued); one replica takes each.",
        )
        async def on_tick(body: Any, msg: NatsMessage) -> None:
            await self.take_tick(msg)

        @broker.subscriber(
            control.filter_subject,
            stream=JStream(CONTROL, declare=False),
            durable=control.durable,
            config=control.config(),
            pull_sub=PullSub(batch_size=10, timeout=1.0),
            ack_policy=AckPolicy.MANUAL,
            decoder=raw_body,
            title=f"{channel}-gateway commands",
            description="Operator commands: reset failed, cancel.",
        )
        async def on_control(body: Any, msg: NatsMessage) -> None:
            raw = msg.raw_message
            try:
                await self.command(raw)
            except Exception as exc:
                # A command that keeps failing must not come back forever: retry a few times
                # (the database may be briefly away), then park it with the error.
                deliveries = raw.metadata.num_delivered
                if deliveries < COMMAND_ATTEMPTS:
                    log.warning("command failed; retrying", extra={"error": repr(exc)})
                    await msg.nack(delay=1.0)
                    return
                await publish_dead_letters(
                    self._ctx.nc,
                    [
                        DeadLetter.from_msg(
                            raw,
                            f"{channel}-control",
                            f"failed {deliveries} times: {type(exc).__name__}: {exc}",
                        )
                    ],
                )
            await msg.ack()

        @broker.subscriber(
            subjects.rpc(f"{channel}_gateway", "queue_depth"),
            decoder=raw_body,
            title=f"{channel}-gateway queue depth",
            description="Request/reply: {site_id} → {queued}.",
        )
        async def queue_depth(body: Any) -> dict[str, Any]:
            try:
                site_id = str(request_object(body, '{"site_id": "…"}').get("site_id") or "")
            except BadRequest as exc:
                return {"error": str(exc)}
            return {"site_id": site_id, "queued": await self.queue.depth(site_id or None)}

    async def start(self, ctx: ServiceContext) -> None:
        """Create the engine's parts and background work (after NATS and the database)."""
        self._ctx = ctx
        # Unique per start: leases are renewed by owner, and a replica restarted under the same
        # instance id must not keep alive the leases its previous life left behind.
        owner = f"{ctx.settings.instance_id}/{uuid.uuid4().hex[:8]}"
        self.queue = MessageQueue(
            ctx.db, self.tables, self.channel, owner=owner, source=f"{self.channel}_gateway"
        )
        self.limits = AccountLimits(ctx.db, self.tables.limiters, self.queue)
        self.relay = EventRelay(ctx.nc, ctx.db, self.tables.pending_events)
        self.recorder = SentRecorder(self.queue, self.relay.nudge)
        self.sites = SiteDirectory(ctx.nc)
        ctx.spawn(self.sites.follow(), "sites")
        ctx.spawn(self._intake_loop(), "intake")
        ctx.spawn(self.relay.run(), "event-relay")
        ctx.spawn(self.recorder.run(), "sent-recorder")
        ctx.spawn(self._every(self.settings.lease_seconds / 3, self._renew_leases), "leases")
        ctx.spawn(self._every(self.settings.recovery_seconds, self.recover), "recovery")
        ctx.spawn(self._every(self.settings.expiry_seconds, self.expire), "expiry")
        ctx.spawn(self._every(15.0, self._report_depth), "queue-metrics")
        if self.settings.retention_days > 0:
            ctx.spawn(self._every(3600.0, self.purge_finished), "retention")
        directory = self.sites

        async def sites_loaded() -> bool:
            return directory.ready.is_set()

        ctx.health.add_check("sites", sites_loaded)
        await asyncio.wait_for(self.sites.ready.wait(), ctx.settings.startup_timeout_seconds)

    async def drain(self) -> None:
        """Stop starting sends; let the ones in flight finish; publish what is pending."""
        self.draining = True
        self._drain_started.set()
        # A tick run may still launch a send or two after the flag is set (it checks between
        # messages): wait until no send is left, not only for the ones present now.
        await self.settled()
        with contextlib.suppress(Exception):
            await self.relay.flush()

    async def settled(self) -> None:
        """Until no send is in flight, including a spaced tick's sends that outlive the tick's
        handling (a simulated-time driver waits for them before moving its clock)."""
        while self._inflight:
            await asyncio.gather(*list(self._inflight), return_exceptions=True)

    async def _pause(self, seconds: float) -> bool:
        """Sleep up to `seconds`; False if draining started first (cuts a wait for a slot short)."""
        if self.draining:
            return False
        if seconds <= SHORT_PAUSE_SECONDS:
            # Immediate mode spaces sends a millisecond or so apart: a task and a timer per
            # send to watch for a drain that would cut a millisecond short cost more CPU
            # than the sends' own bookkeeping.
            await asyncio.sleep(seconds)
            return not self.draining
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._drain_started.wait(), seconds)
            return False
        return True

    async def _every(self, seconds: float, work: Any) -> None:
        while True:
            try:
                await work()
            except Exception:
                log.exception("periodic work failed", extra={"work": work.__name__})
            await asyncio.sleep(seconds)

    # --- intake ------------------------------------------------------------------------

    async def _intake_loop(self) -> None:
        """Pull accepted messages from the shared durable consumer and store them (background).

        One fetch returns what is there (up to `intake_batch`) or times out with nothing; every
        fetched batch is stored, then acknowledged, so a crash in between only redelivers.
        """
        spec = self._outbox_spec
        js = self._ctx.js
        await js.add_consumer(spec.stream, config=spec.config())
        sub = await js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        try:
            while not self.draining:
                try:
                    batch = await sub.fetch(batch=self.settings.intake_batch, timeout=0.25)
                except TimeoutError:  # nats-py raises both its own and asyncio's
                    continue
                except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
                    await asyncio.sleep(0.5)
                    continue
                except nats.errors.Error as exc:
                    # A clustered consumer answers 503 (ServiceUnavailable) or nothing at all
                    # while its stream or consumer elects a new leader after a node is lost.
                    # The durable and its pending messages survive: wait and fetch again,
                    # instead of letting the loop crash and take the replica down with it.
                    log.warning("outbox fetch failed; retrying", extra={"error": repr(exc)})
                    await asyncio.sleep(0.5)
                    continue
                if not batch:
                    continue
                try:
                    await self.intake(batch)
                except Exception:
                    # Nothing was acknowledged: the batch comes back (stored once, by id).
                    log.exception("intake failed; the batch will be redelivered")
                    for msg in batch:
                        with contextlib.suppress(Exception):
                            await msg.nak(delay=1.0)
        finally:
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def intake(self, batch: Sequence[Msg]) -> None:
        """Store a batch of accepted messages; dead-letter the unreadable at once; retry what
        failed for another reason (an unknown site, a database error) a few times, then
        dead-letter it with the reason; acknowledge the rest."""
        incoming: list[tuple[Msg, Incoming]] = []
        dead: list[DeadLetter] = []
        retry: list[tuple[Msg, str]] = []
        spans = []
        for msg in batch:
            span = None
            try:
                event = decode(msg.headers, msg.data)
                if not isinstance(event.data, MessageAccepted):
                    raise UndecodableEvent(f"expected stagger.message.accepted, got {event.type}")
                traceparent = None
                if tracing.enabled():
                    span = tracing.intake_span(
                        msg.headers,
                        message_id=event.data.message_id,
                        site_id=event.data.site_id,
                        channel=self.channel,
                        subject=msg.subject,
                    )
                    spans.append(span)
                    traceparent = tracing.traceparent_of(span)
                problem = _envelope_problem(msg, event.data) or self._message_problem(event.data)
                if problem:
                    raise UndecodableEvent(problem)
                site = await self.sites.wait_for(event.data.site_id, patience=2.0)
                if site is None:
                    # Perhaps created a moment ago and not yet seen here: try again later.
                    retry.append((msg, f"unknown site {event.data.site_id}"))
                    continue
                if site.group_id != event.data.group_id:
                    raise UndecodableEvent(
                        f"site {event.data.site_id} is not in group {event.data.group_id}"
                    )
                incoming.append(
                    (
                        msg,
                        Incoming(
                            event.data,
                            event.actor,
                            event.correlation_id,
                            stream_position(msg)[0],
                            traceparent,
                        ),
                    )
                )
            except (UndecodableEvent, ValidationError, ValueError) as exc:
                dead.append(DeadLetter.from_msg(msg, f"{self.channel}-outbox", str(exc)))
                if span is not None:
                    tracing.record_error(span, f"dead-lettered: {exc}")
        try:
            stored, failed = await self._store(incoming)
            if stored:
                self.relay.nudge()
                arrived, self._arrivals = self._arrivals, _Arrivals()
                arrived.sites.update(i.message.site_id for i in stored)
                arrived.event.set()
        finally:
            for span in spans:
                span.end()
        retry.extend(failed)
        later: set[int] = set()
        for msg, reason in retry:
            deliveries = _deliveries(msg)
            if deliveries < self.settings.intake_attempts:
                log.warning(
                    "intake of a message failed; retrying",
                    extra={"reason": reason, "deliveries": deliveries},
                )
                later.add(id(msg))
            else:
                dead.append(
                    DeadLetter.from_msg(
                        msg,
                        f"{self.channel}-outbox",
                        f"not stored after {deliveries} attempts: {reason}",
                    )
                )
        if dead:
            await publish_dead_letters(self._ctx.nc, dead)
        for msg in batch:
            if id(msg) in later:
                await msg.nak(delay=self.settings.intake_retry_seconds)
            else:
                await msg.ack()

    async def _store(
        self, incoming: list[tuple[Msg, Incoming]]
    ) -> tuple[list[Incoming], list[tuple[Msg, str]]]:
        """Store the batch in one transaction; if that fails, each message on its own, so one
        message the database refuses does not hold back the others. Returns what was stored
        and what failed (with the reason)."""
        if not incoming:
            return [], []
        try:
            await self.queue.ingest([i for _, i in incoming])
            return [i for _, i in incoming], []
        except Exception:
            log.exception("storing an intake batch failed; storing its messages one by one")
        stored: list[Incoming] = []
        failed: list[tuple[Msg, str]] = []
        for msg, item in incoming:
            try:
                await self.queue.ingest([item])
                stored.append(item)
            except Exception as exc:
                # A database error's own message, not SQLAlchemy's rendering of the statement
                # and its parameters (the recipient, the body).
                cause = getattr(exc, "orig", None) or exc
                failed.append((msg, f"{type(cause).__name__}: {cause}"[:1000]))
        return stored, failed

    def _message_problem(self, message: MessageAccepted) -> str | None:
        """Why a decoded message can never be stored, or None."""
        if message.channel != self.channel:
            return f"a {message.channel} message on the {self.channel} outbox"
        # What goes into the queue's key columns must fit them on every database.
        if not _fits(message.message_id, 64):
            return f"message_id {message.message_id[:80]!r} is not 1-64 printable characters"
        if not _fits(message.to, 320):
            return f"recipient (to) {message.to[:80]!r} is not 1-320 printable characters"
        naive = [
            name
            for name in ("submitted_at", "not_before", "expires_at")
            if (value := getattr(message, name)) is not None and value.tzinfo is None
        ]
        if naive:
            return f"{', '.join(naive)} without a time zone"
        return None

    # --- ticks -------------------------------------------------------------------------

    async def take_tick(self, msg: NatsMessage) -> None:
        """Handle one tick message end to end (acknowledged when its sends are done)."""
        try:
            event = decode(msg.raw_message.headers, msg.raw_message.data)
            tick = event.data
            if not isinstance(tick, TickIssued):
                raise UndecodableEvent(f"expected a tick, got {event.type}")
            problem = _tick_problem(tick)
            if problem:
                raise UndecodableEvent(problem)
        except (UndecodableEvent, ValidationError) as exc:
            await publish_dead_letters(
                self._ctx.nc,
                [DeadLetter.from_msg(msg.raw_message, f"{self.channel}-ticks", str(exc))],
            )
            await msg.ack()
            return
        now = datetime.now(UTC)
        if now > tick.not_after:
            TICKS_SEEN.labels(self.channel, "expired").inc()
            await msg.ack()
            return
        if self.draining:
            await msg.nack()  # another replica takes it
            return
        TICKS_SEEN.labels(self.channel, "taken").inc()
        keepalive = asyncio.create_task(self._keep_alive(msg))
        try:
            # Schedulers publish ticks a little ahead of their instant: hold it until then, so
            # nothing is claimed or sent before `not_before`.
            early = (tick.not_before - datetime.now(UTC)).total_seconds()
            if early > 0:
                await asyncio.sleep(early)
            TICK_LAG.labels(self.channel).observe(
                max(0.0, (datetime.now(UTC) - tick.scheduled_at).total_seconds())
            )
            await self.run_tick(tick)
        finally:
            keepalive.cancel()
            await msg.ack()

    async def _keep_alive(self, msg: NatsMessage) -> None:
        spec = CONSUMERS_BY_NAME[f"{self.channel}-ticks"]
        while True:
            await asyncio.sleep(spec.ack_wait / 3)
            with contextlib.suppress(Exception):
                await msg.in_progress()

    async def run_tick(self, tick: TickIssued) -> int:
        """Release up to the tick's budget of messages; returns how many were attempted."""
        site_ids = [tick.site_id] if tick.scope == "site" and tick.site_id else list(tick.sites)
        sites = [s for s in (self.sites.get(i) for i in site_ids) if s is not None]
        if not sites:
            return 0
        try:
            await self.adapter.on_tick(tick, sites)
        except Exception:
            log.exception("tick side work failed", extra={"tick": tick.tick_id})
        release = Release(
            tick_id=tick.tick_id,
            scheduled_at=tick.scheduled_at,
            reason=tick.reason,
            manual=tick.manual,
            actor=None,
        )
        start = max(datetime.now(UTC), tick.not_before)
        spacing = timedelta(seconds=tick.spacing_seconds)
        remaining = tick.budget
        index = 0
        attempted = 0
        skipped: list[Key] = []
        run = _TickRun(tick)
        if spacing > timedelta(0) and not tick.manual and tick.scope == "site" and tick.site_id:
            run.pace = pace_key(tick.site_id)
        while remaining > 0 and not self.draining:
            now = datetime.now(UTC)
            if now > tick.not_after:
                break
            batch = await self.queue.claim(
                [s.site_id for s in sites],
                min(remaining, 200),
                now=now,
                lease=timedelta(seconds=self.settings.lease_seconds),
                release=release,
                exclude=skipped,
            )
            if not batch:
                if await self._more_arrived(tick):
                    continue
                break
            self._held.update(c.key for c in batch)
            handled: set[Key] = set()
            try:
                launched, stop = await self._release_batch(
                    batch, now, start, spacing, index, skipped, handled, run
                )
            except BaseException:
                # Whatever failed (the database, a limiter under contention), the rest of the
                # batch must not stay leased for as long as this replica lives.
                with contextlib.suppress(Exception):
                    await self.queue.release_unsent([c for c in batch if c.key not in handled])
                raise
            finally:
                # Settled here (deferred, suppressed, released…) or never started: no longer
                # ours to keep alive. Launched sends let go in `_attempt`.
                self._held.difference_update(c.key for c in batch if c.key not in run.launched)
            index += launched
            remaining -= launched
            attempted += launched
            if stop:
                remaining = 0
            # Claim the next batch while the tail of this one is still in flight (the provider
            # connections would otherwise idle between batches), but never hold more than about
            # two batches' worth of leases at once. (Spaced sends wait for their turn without
            # a send slot, each under a lease it extends; the budget bounds them.)
            # Counted until their provider call ends, not until their outcome is recorded:
            # the recorder lingers to group its commits, and waiting for that would idle the
            # provider connections at the end of every batch.
            while run.pace is None and len(run.calling) > self.settings.parallel_sends:
                run.called.clear()
                await run.called.wait()
            run.tasks = {t for t in run.tasks if not t.done()}
        if run.tasks and run.pace is not None:
            # A spaced tick's sends take most of a cycle: the tick's worker (and its ack) does
            # not wait for them, or a replica's few tick workers would serve only as many
            # sites at a time. Each send is leased: after a crash it is reconciled, not lost.
            for task in run.tasks:
                task.add_done_callback(_log_failure)
            run.tasks.clear()
        elif run.tasks:
            await asyncio.gather(*run.tasks, return_exceptions=True)
            run.tasks.clear()
        self.relay.nudge()
        return attempted

    async def _more_arrived(self, tick: TickIssued) -> bool:
        """For an immediate-mode tick (an account's, valid for about a second): wait for intake
        to store more messages within the tick's window. True if some arrived.

        Without it, messages taken in just after the tick found the queue empty waited for the
        next tick, and a batch arriving in bursts went out in per-second steps.
        """
        left = (tick.not_after - datetime.now(UTC)).total_seconds()
        if tick.scope != "account" or not 0 < left <= SHORT_TICK_SECONDS:
            return False
        wanted = set(tick.sites)
        while not self.draining:
            left = (tick.not_after - datetime.now(UTC)).total_seconds()
            if left <= 0:
                return False
            arrived = self._arrivals
            try:
                await asyncio.wait_for(arrived.event.wait(), left)
            except TimeoutError:
                return False
            if arrived.sites & wanted:
                return not self.draining
        return False

    async def _release_batch(
        self,
        batch: list[Claimed],
        now: datetime,
        start: datetime,
        spacing: timedelta,
        index: int,
        skipped: list[Key],
        handled: set[Key],
        run: _TickRun,
    ) -> tuple[int, bool]:
        """Check a claimed batch and start its sends; returns (sends started, stop the tick).

        Per-message checks first (site, expiry, opt-out, quiet hours), then per account: the
        hold flag, the daily cap and one limiter reservation for all of the account's messages
        in the batch (not one database round trip per message).
        """
        by_account: dict[str, list[tuple[Claimed, Any]]] = {}
        for claimed in batch:
            site = self.sites.get(claimed.site_id)
            if site is None:
                await self.queue.release_unsent([claimed])
                handled.add(claimed.key)
                skipped.append(claimed.key)
                continue
            verdict = await self._verdict(claimed, site, now)
            if verdict is not None:
                handled.add(claimed.key)
                if verdict.kind == "defer":
                    skipped.append(claimed.key)
                continue
            account = self.adapter.account_for(site)
            if account is None:
                await self.queue.defer(
                    claimed,
                    reason=f"{self.channel} is off for the site",
                    retry_at=now + timedelta(minutes=5),
                    attempt_used=False,
                )
                handled.add(claimed.key)
                skipped.append(claimed.key)
                continue
            by_account.setdefault(account, []).append((claimed, site))
        launched = 0
        stop = False
        for account, items in by_account.items():
            if await self.limits.held(account) is not None:
                await self.queue.release_unsent([c for c, _ in items])
                handled.update(c.key for c, _ in items)
                await self._check_resume(account, items[0][1])
                stop = True
                continue
            limits = self.adapter.limits_for(items[0][1])
            cap_lock = self._cap_locks.setdefault(account, asyncio.Lock())
            async with cap_lock:
                room = await self.limits.room_today(account, limits.daily_cap)
                room -= self._unrecorded.get(account, 0)
                allowed, over = items[: max(room, 0)], items[max(room, 0) :]
                self._unrecorded[account] = self._unrecorded.get(account, 0) + len(allowed)
            for claimed, _ in over:
                await self.queue.defer(
                    claimed,
                    reason="the account's daily cap is reached",
                    retry_at=now + timedelta(minutes=15),
                    attempt_used=False,
                )
                handled.add(claimed.key)
                skipped.append(claimed.key)
            if not allowed:
                continue
            pending = allowed
            try:
                while pending:
                    if self.draining:
                        # Not handed to the provider yet: leave them for another replica.
                        await self._give_back(account, pending, handled)
                        pending = []
                        stop = True
                        break
                    if run.pace is not None:
                        claimed, site = pending[0]
                        launch = await self._paced_slot(run, account, limits, start)
                        if launch is None:
                            # Its turn would fall after the tick's window: it waits for the
                            # next tick, still queued.
                            await self._give_back(account, pending, handled)
                            pending = []
                            stop = True
                            break
                        pending = pending[1:]
                        launched += 1
                        self._launch(claimed, site, account, launch, limits.interval, run, spacing)
                        handled.add(claimed.key)
                        continue
                    # Reserve limiter slots for the sends that can start now, and for the
                    # few that will get a send slot well within STALL. A whole batch's
                    # reservation went stale while the batch waited for send slots (whenever
                    # the provider is slower than the account's rate), and every late send
                    # then took a fresh reservation of its own: two database transactions
                    # per message, contended by every send in flight (the load test found
                    # that costing more than the sends themselves). Reserving only for the
                    # free slots cost one transaction per one or two sends instead (a slot
                    # frees as each send ends), about a millisecond of the loop's CPU each.
                    await self._send_slots.acquire()
                    ready = 1
                    while ready < len(pending) and not self._send_slots.locked():
                        await self._send_slots.acquire()  # free: returns at once
                        ready += 1
                    taken = ready + self._soon_free(len(pending) - ready, run)
                    try:
                        slots = await self.limits.reserve(
                            account, taken, limits.interval, burst=limits.burst
                        )
                    except BaseException:
                        for _ in range(ready):
                            self._send_slots.release()
                        raise
                    chunk, pending = pending[:taken], pending[taken:]
                    for n, ((claimed, site), slot) in enumerate(zip(chunk, slots, strict=True)):
                        when = max(slot, start + (index + launched) * spacing)
                        launched += 1
                        # The first `ready` hold a send slot; the rest take one as sends end.
                        self._launch(
                            claimed, site, account, when, limits.interval, run, spacing, n < ready
                        )
                        handled.add(claimed.key)
            except BaseException:
                # Not launched, so not in flight either (the caller puts them back in the queue).
                self._unrecorded[account] -= len(pending)
                raise
        return launched, stop

    def _soon_free(self, waiting: int, run: _TickRun) -> int:
        """How many more of `waiting` sends may be launched ahead of a free send slot: as many
        as should get one within half of STALL, judging by how long provider calls take lately,
        less those already launched ahead (none until a call has been timed)."""
        if waiting <= 0 or self._send_seconds is None:
            return 0
        parallel = self.settings.parallel_sends
        expected = parallel * (STALL.total_seconds() / 2) / max(self._send_seconds, 1e-4)
        return max(0, min(waiting, int(expected), 2 * parallel) - len(run.slotless))

    def _time_send(self, seconds: float) -> None:
        previous = self._send_seconds
        self._send_seconds = seconds if previous is None else previous + 0.1 * (seconds - previous)

    async def _give_back(
        self, account: str, items: list[tuple[Claimed, Any]], handled: set[Key]
    ) -> None:
        """Return claimed messages that will not be sent now to the queue, unattempted."""
        await self.queue.release_unsent([c for c, _ in items])
        handled.update(c.key for c, _ in items)
        self._unrecorded[account] -= len(items)

    async def _paced_slot(
        self, run: _TickRun, account: str, limits: AccountLimitsSpec, start: datetime
    ) -> datetime | None:
        """When the next send of a spaced site tick may start: after the site's previous send
        (this tick's, an earlier tick's, another replica's) plus the spacing, and in the
        account's limit; None if that is past the tick's window.

        One reservation per send: spacing is seconds to minutes, so the round trip is
        nothing, and a reservation the tick cannot use costs the site at most one spacing.
        """
        assert run.pace is not None
        spacing = timedelta(seconds=run.tick.spacing_seconds)
        at = start if start > datetime.now(UTC) else None
        (turn,) = await self.limits.reserve(run.pace, 1, spacing, now=at)
        if turn > run.tick.not_after:
            return None
        (slot,) = await self.limits.reserve(account, 1, limits.interval, burst=limits.burst)
        return max(turn, slot)

    def _launch(
        self,
        claimed: Claimed,
        site: Any,
        account: str,
        when: datetime,
        interval: timedelta | None,
        run: _TickRun,
        spacing: timedelta,
        slot_held: bool = False,
    ) -> None:
        task = asyncio.create_task(
            self._attempt(claimed, site, account, when, interval, run, spacing, slot_held)
        )
        if not slot_held:
            run.slotless.add(task)
            task.add_done_callback(run.slotless.discard)
        run.launched.add(claimed.key)
        run.tasks.add(task)
        run.calling.add(task)
        task.add_done_callback(run.call_ended)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _verdict(self, claimed: Claimed, site: Any, now: datetime) -> Verdict | None:
        """None if the message may go; otherwise the verdict, already applied."""
        if claimed.expires_at is not None and claimed.expires_at <= now:
            await self.queue.expired(claimed)
            OUTCOMES.labels(self.channel, "expired").inc()
            return Verdict("fail", "expired")
        verdict = await self.adapter.check(claimed, site, now)
        if verdict.kind == "send":
            return None
        if verdict.kind == "suppress":
            await self.queue.suppressed(claimed, reason=verdict.reason)
            OUTCOMES.labels(self.channel, "suppressed").inc()
        elif verdict.kind == "defer":
            await self.queue.defer(
                claimed, reason=verdict.reason, retry_at=verdict.retry_at, attempt_used=False
            )
        else:
            await self.queue.failed(claimed, reason=verdict.reason, attempts=0)
            OUTCOMES.labels(self.channel, "failed").inc()
        return verdict

    async def _attempt(
        self,
        claimed: Claimed,
        site: Any,
        account: str,
        when: datetime,
        interval: timedelta | None = None,
        run: _TickRun | None = None,
        spacing: timedelta = timedelta(0),
        slot_held: bool = True,
    ) -> None:
        """Wait for `when`, send, record. `slot_held`: the caller already took a send slot;
        otherwise (spaced sends, which wait minutes) it is taken after the wait, so waiting
        sends of one site never keep another site's sends from starting."""
        try:
            wait = (when - datetime.now(UTC)).total_seconds()
            THROTTLE_WAIT.labels(self.channel).observe(max(0.0, wait))
            if wait > 0:
                if wait > self.settings.lease_seconds / 2:
                    await self.queue.extend_lease(
                        [claimed.key], timedelta(seconds=wait + self.settings.lease_seconds)
                    )
                await self._pause(wait)
            if not slot_held:
                await self._send_slots.acquire()
                slot_held = True
                if run is not None:
                    run.slotless.discard(asyncio.current_task())
            if self.draining or (
                run is not None and not await run.keep_spacing(spacing, self._pause)
            ):
                # SIGTERM came while this one waited for its slot: it is not in flight yet,
                # so another replica sends it rather than this one delaying its exit.
                await self.queue.release_unsent([claimed])
                return
            if interval is not None and datetime.now(UTC) - when > max(interval, STALL):
                # This replica stalled well past its reserved slot; sending now could crowd
                # slots other replicas reserved since. Take a fresh one.
                (slot,) = await self.limits.reserve(account, 1, interval)
                late = (slot - datetime.now(UTC)).total_seconds()
                if late > 0:
                    await asyncio.sleep(late)
            try:
                with tracing.send_span(
                    claimed.traceparent,
                    message_id=claimed.message_id,
                    site_id=claimed.site_id,
                    channel=self.channel,
                    account=account,
                    attempt=claimed.attempts + 1,
                ) as span:
                    began = asyncio.get_running_loop().time()
                    result = await self.adapter.send(claimed, site)
                    self._time_send(asyncio.get_running_loop().time() - began)
                    tracing.record_send(span, result)
            except Exception as exc:  # an adapter bug must not strand the message
                log.exception("adapter raised; treating as a transient failure")
                result = SendResult("retry", error=f"{type(exc).__name__}: {exc}")
            # The slot bounds provider calls in flight, not database writes: free it before
            # waiting for the outcome's (group) commit.
            slot_held = False
            self._send_slots.release()
            if run is not None:
                run.began(result.began_at)
                run.call_ended(asyncio.current_task())
            await self._record(claimed, account, result)
        finally:
            self._held.discard(claimed.key)
            async with self._cap_locks[account]:
                self._unrecorded[account] -= 1
            if slot_held:
                self._send_slots.release()

    async def _record(self, claimed: Claimed, account: str, result: Any) -> None:
        if result.outcome == "sent":
            if await self.recorder.sent(claimed, account, result):
                SENT.labels(self.channel).inc()
                OUTCOMES.labels(self.channel, "sent").inc()
        elif result.outcome == "hold":
            await self.queue.defer(
                claimed,
                reason=result.error or "account held",
                retry_at=None,
                attempt_used=False,
                announce=False,
            )
            await self.limits.hold(account, result.error or "held")
        elif result.outcome == "retry" and claimed.attempts + 1 < self.settings.max_attempts:
            FAILURES.labels(self.channel, "transient").inc()
            delay = backoff_delay(
                claimed.attempts + 1,
                self.settings.retry_base_seconds,
                self.settings.retry_cap_seconds,
                result.retry_after,
                0.2,
                random.random(),
            )
            await self.queue.defer(
                claimed,
                reason=result.error or "temporary provider error",
                retry_at=datetime.now(UTC) + timedelta(seconds=delay),
                attempt_used=True,
            )
        else:
            FAILURES.labels(self.channel, "permanent").inc()
            reason = result.error or "refused by the provider"
            if result.outcome == "retry":
                reason = f"gave up after {claimed.attempts + 1} attempts: {reason}"
            await self.queue.failed(
                claimed,
                reason=reason,
                provider_response=result.provider_response,
                permanent=result.outcome == "failed",
            )
            OUTCOMES.labels(self.channel, "failed").inc()
        self.relay.nudge()

    async def _check_resume(self, account: str, site: Any) -> None:
        try:
            if await self.adapter.account_resumed(account, site):
                await self.limits.release(account)
        except Exception:
            log.exception("could not check whether a held account may resume")

    # --- recovery ----------------------------------------------------------------------

    async def _renew_leases(self) -> None:
        await self.queue.renew_leases(
            timedelta(seconds=self.settings.lease_seconds), list(self._held)
        )

    async def recover(self) -> int:
        """Reconcile sends interrupted by a crashed replica; returns how many were settled."""
        settled = 0
        for claimed in await self.queue.take_over_expired(
            datetime.now(UTC), lease=timedelta(seconds=self.settings.lease_seconds)
        ):
            site = self.sites.get(claimed.site_id)
            if site is None:
                continue
            account = self.adapter.account_for(site) or "unknown"
            try:
                outcome = await self.adapter.reconcile(claimed, site)
            except Exception as exc:
                log.warning(
                    "reconciliation failed; will retry",
                    extra={"message_id": claimed.message_id, "error": str(exc)},
                )
                continue
            if outcome.sent is True:
                await self.queue.sent(
                    claimed,
                    account=account,
                    provider_message_id=outcome.provider_message_id,
                    attempts=0,
                    reconciled=True,
                )
                SENT.labels(self.channel).inc()
                OUTCOMES.labels(self.channel, "sent").inc()
                settled += 1
            elif outcome.sent is False:
                await self.queue.defer(
                    claimed,
                    reason="interrupted before reaching the provider; queued again",
                    retry_at=None,
                    attempt_used=False,
                )
                settled += 1
            # None: the provider cannot tell yet; the lease expires again and we ask later.
        if settled:
            self.relay.nudge()
        return settled

    async def expire(self) -> None:
        """Queued messages past their `expires_at` end expired."""
        done = await self.queue.expire_due()
        if done:
            OUTCOMES.labels(self.channel, "expired").inc(len(done))
            self.relay.nudge()

    async def purge_finished(self) -> int:
        """Drop finished messages past the retention period from the ledger, in chunks so
        that sending never waits long for the database; returns how many went."""
        before = datetime.now(UTC) - timedelta(days=self.settings.retention_days)
        total = 0
        while True:
            gone = await self.queue.purge_finished(before)
            total += gone
            if gone == 0:
                break
            await asyncio.sleep(0)
        if total:
            log.info("finished messages purged", extra={"messages": total, "before": before})
        return total

    async def _report_depth(self) -> None:
        QUEUE_DEPTH.clear()
        for site, depth in (await self.queue.depth_by_site()).items():
            QUEUE_DEPTH.labels(self.channel, site).set(depth)

    # --- commands ----------------------------------------------------------------------

    async def command(self, msg: Msg) -> None:
        """Apply one operator command from CONTROL."""
        try:
            event = decode(msg.headers, msg.data)
        except UndecodableEvent as exc:
            await publish_dead_letters(
                self._ctx.nc, [DeadLetter.from_msg(msg, f"{self.channel}-control", str(exc))]
            )
            return
        data = event.data
        problem = _command_problem(data)
        if problem:
            await publish_dead_letters(
                self._ctx.nc, [DeadLetter.from_msg(msg, f"{self.channel}-control", problem)]
            )
            return
        if isinstance(data, CancelRequested):
            await self.queue.cancel(
                data.site_id, data.message_ids, reason=data.reason or "cancelled", actor=event.actor
            )
        elif isinstance(data, ResetFailedRequested):
            await self.queue.requeue_failed(data.site_id, data.message_ids, actor=event.actor)
        else:
            await publish_dead_letters(
                self._ctx.nc,
                [
                    DeadLetter.from_msg(
                        msg,
                        f"{self.channel}-control",
                        f"not a command for the {self.channel} gateway: {event.ce_type}",
                    )
                ],
            )
            return
        self.relay.nudge()
