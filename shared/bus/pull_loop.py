"""The one hand-written way to consume a JetStream durable: `PullLoop`.

FastStream subscribers are the default (see docs/architecture.md, "One way to consume the
bus"); a `PullLoop` is for consumers FastStream cannot serve well: a whole batch handed to one
handler (stored in one transaction), a verdict per message, and fetch errors that must never
end the loop (a cluster electing a leader answers 503 for a while).

The handler returns one `Verdict` per message, in order: `ACK`, `Retry(delay)` (nak, delivered
again later) or `Poison(reason)` (dead-lettered with the reason, then acknowledged). If the
handler raises, every message of the batch is nak'ed: nothing is acknowledged unhandled.
While the handler runs, the batch is kept alive (`in_progress`) every third of the ack wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from shared.bus.deadletter import DeadLetter, DeadLetterSink
from shared.bus.topology import ConsumerSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Ack:
    """Handled: acknowledge."""


@dataclass(frozen=True)
class Retry:
    """Not handled now: deliver again after `delay` seconds."""

    delay: float = 1.0


@dataclass(frozen=True)
class Poison:
    """Can never be handled: dead-letter with `reason`, then acknowledge."""

    reason: str


ACK = Ack()
Verdict = Ack | Retry | Poison
BatchHandler = Callable[[Sequence[Msg]], Awaitable[Sequence[Verdict]]]


async def settle(
    batch: Sequence[Msg],
    verdicts: Sequence[Verdict],
    dead_letters: DeadLetterSink,
    consumer: str,
) -> None:
    """Apply one verdict per message: dead letters first (stored durably), then acks and naks,
    so that a crash in between redelivers instead of losing."""
    if len(verdicts) != len(batch):
        raise ValueError(f"{len(verdicts)} verdicts for a batch of {len(batch)}")
    poison = [
        DeadLetter.from_msg(msg, consumer, v.reason)
        for msg, v in zip(batch, verdicts, strict=True)
        if isinstance(v, Poison)
    ]
    if poison:
        await dead_letters.publish(poison)
    for msg, verdict in zip(batch, verdicts, strict=True):
        if isinstance(verdict, Retry):
            await msg.nak(delay=verdict.delay)
        else:
            await msg.ack()


class PullLoop:
    """Fetch a batch from one durable, hand it to `handler`, settle it; until `stop()`."""

    def __init__(
        self,
        js: JetStreamContext,
        spec: ConsumerSpec,
        handler: BatchHandler,
        dead_letters: DeadLetterSink,
        *,
        batch: int = 100,
        fetch_timeout: float = 1.0,
        retry_delay: float = 1.0,
        consumer: str | None = None,
    ) -> None:
        self._js = js
        self._spec = spec
        self._handler = handler
        self._dead_letters = dead_letters
        self._batch = batch
        self._fetch_timeout = fetch_timeout
        self._retry_delay = retry_delay
        self.consumer = consumer or spec.durable
        """The name dead letters carry."""
        self._stopping = False
        self.ready = False
        """True while subscribed (a health check reads it)."""

    def stop(self) -> None:
        """Leave `run` after the batch in hand."""
        self._stopping = True

    async def run(self) -> None:
        """Create (or update) the durable, then fetch and handle until stopped."""
        spec = self._spec
        await self._js.add_consumer(spec.stream, config=spec.config())
        sub = await self._js.pull_subscribe_bind(durable=spec.durable, stream=spec.stream)
        self.ready = True
        try:
            while not self._stopping:
                batch = await self._fetch(sub)
                if batch:
                    await self.handle(batch)
        finally:
            self.ready = False
            # A pull subscription left behind holds the connection's drain until it times out.
            with contextlib.suppress(Exception):
                await sub.unsubscribe()

    async def _fetch(self, sub: JetStreamContext.PullSubscription) -> list[Msg]:
        try:
            return await sub.fetch(batch=self._batch, timeout=self._fetch_timeout)
        except TimeoutError:  # nats-py raises both its own and asyncio's
            return []
        except (nats.errors.ConnectionClosedError, nats.errors.ConnectionReconnectingError):
            await asyncio.sleep(0.5)
            return []
        except nats.errors.Error as exc:
            # A clustered consumer answers 503 (or nothing) while its stream or consumer
            # elects a new leader; the durable and its pending messages survive. Crashing
            # here would take every replica down at once.
            log.warning(
                "fetch failed; retrying", extra={"consumer": self.consumer, "error": repr(exc)}
            )
            await asyncio.sleep(0.5)
            return []

    async def handle(self, batch: Sequence[Msg]) -> None:
        """Hand one fetched batch to the handler and settle it (kept alive meanwhile)."""
        keepalive = asyncio.create_task(self._keep_alive(batch))
        try:
            try:
                verdicts = await self._handler(batch)
            except Exception:
                # Nothing was acknowledged: the batch comes back.
                log.exception(
                    "handling a batch failed; it will be redelivered",
                    extra={"consumer": self.consumer},
                )
                for msg in batch:
                    with contextlib.suppress(Exception):
                        await msg.nak(delay=self._retry_delay)
                return
        finally:
            keepalive.cancel()
        await settle(batch, verdicts, self._dead_letters, self.consumer)

    async def _keep_alive(self, batch: Sequence[Msg]) -> None:
        while True:
            await asyncio.sleep(self._spec.ack_wait / 3)
            for msg in batch:
                with contextlib.suppress(Exception):
                    await msg.in_progress()
