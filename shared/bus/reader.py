"""Reading a stream in order without losing a message: a hand-rolled ordered *pull* reader.

nats-py's ordered push consumer drops messages when its callback is slower than the server
(the client's pending buffer overflows) and, in our measurements, could skip thousands of
events and then stall when a projection applied batches to SQL. A pull reader asks only for what
it has room for, so nothing is pushed faster than it is consumed:

- an ephemeral pull consumer (no acks, in memory) starts at the wanted sequence;
- at most two pull requests of `batch` messages are outstanding; a new one goes out as soon as
  the reader has room for it;
- every delivery carries its consumer sequence: a gap (which cannot happen on one TCP
  connection, but a reconnect can cause one) recreates the consumer after the last delivered
  stream sequence, so the caller still sees every message exactly once and in order;
- the consumer is deleted when the reader stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
from collections import deque
from collections.abc import AsyncGenerator

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

log = logging.getLogger(__name__)

_EXPIRES_NS = 5_000_000_000  # a pull request waits at most 5 s for messages
_SILENCE = 12.0
"""Seconds without a message or a status while requests are outstanding: they were lost.

A live consumer answers every request within its 5 s expiry (messages, or 408). Silence means
the node holding the consumer (in memory, one replica) died or the requests died with a
connection; without this the reader would wait for those answers forever.
"""


def _ack_numbers(reply: str) -> tuple[int, int, int]:
    """(stream sequence, consumer sequence, pending) from a JetStream reply subject."""
    tokens = reply.split(".")
    if len(tokens) == 9:
        return int(tokens[5]), int(tokens[6]), int(tokens[8])
    return int(tokens[7]), int(tokens[8]), int(tokens[10])


class OrderedPullReader:
    """Yields a stream's messages in order, in batches, with back-pressure."""

    def __init__(
        self,
        nc: Client,
        stream: str,
        *,
        filter_subject: str | None = None,
        from_sequence: int = 1,
        deliver_last_per_subject: bool = False,
        batch: int = 500,
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream()
        self.stream = stream
        self.filter_subject = filter_subject
        self._next_sequence = max(1, from_sequence)
        self._last_per_subject = deliver_last_per_subject
        self._batch = batch
        self._buffer: deque[Msg] = deque()
        self._arrived = asyncio.Event()
        # What each outstanding pull request may still deliver. The server serves requests in
        # order; a request ends after `batch` messages, or early with a status message.
        self._requests: deque[int] = deque()
        self._expected_cseq = 1
        self._consumer: str | None = None
        self._inbox = nc.new_inbox()
        self._sub: Subscription | None = None
        self._reset = False
        self._heard = time.monotonic()

    async def _create_consumer(self) -> None:
        name = f"reader-{secrets.token_hex(6)}"
        if self._last_per_subject and self._expected_cseq == 1 and self._next_sequence == 1:
            policy, start = DeliverPolicy.LAST_PER_SUBJECT, None
        else:
            policy, start = DeliverPolicy.BY_START_SEQUENCE, self._next_sequence
        await self._js.add_consumer(
            self.stream,
            config=ConsumerConfig(
                name=name,
                ack_policy=AckPolicy.NONE,
                deliver_policy=policy,
                opt_start_seq=start,
                # Last-per-subject needs a filter; ">" means every subject of the stream.
                filter_subject=self.filter_subject
                or (">" if policy is DeliverPolicy.LAST_PER_SUBJECT else None),
                mem_storage=True,
                inactive_threshold=30.0,
                max_waiting=8,
                num_replicas=1,
            ),
        )
        self._consumer = name
        self._expected_cseq = 1
        self._requests.clear()
        self._heard = time.monotonic()

    async def _on_message(self, msg: Msg) -> None:
        self._heard = time.monotonic()
        headers = msg.headers or {}
        status = headers.get("Status")
        if status is not None:
            # 404 no messages, 408 request expired: that pull request is finished. 409: the
            # consumer is gone or a limit was hit; start over after what was delivered.
            if status.startswith("409"):
                self._reset = True
            if status.startswith(("404", "408", "409")) and self._requests:
                self._requests.popleft()
            self._arrived.set()
            return
        if not msg.reply:
            return
        if self._consumer is None or f".{self._consumer}." not in msg.reply:
            return  # a late delivery of a consumer this reader has replaced
        if self._requests:
            self._requests[0] -= 1
            if self._requests[0] <= 0:
                self._requests.popleft()
        self._buffer.append(msg)
        self._arrived.set()

    async def _request(self) -> None:
        assert self._consumer is not None
        payload = json.dumps({"batch": self._batch, "expires": _EXPIRES_NS}).encode()
        await self._nc.publish(
            f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{self._consumer}",
            payload,
            reply=self._inbox,
        )
        self._requests.append(self._batch)

    async def _top_up(self) -> None:
        # Keep up to two requests in flight while there is room for what they bring.
        while len(self._requests) < 2 and len(self._buffer) < self._batch * 2:
            await self._request()

    async def batches(
        self, *, follow: bool, until_sequence: int | None
    ) -> AsyncGenerator[list[Msg], None]:
        """Batches of whatever has arrived, until the end (or forever with `follow`)."""
        self._sub = await self._nc.subscribe(
            self._inbox, cb=self._on_message, pending_msgs_limit=self._batch * 8
        )
        await self._create_consumer()
        try:
            while True:
                if self._reset and not await self._restart():
                    await asyncio.sleep(1.0)
                    continue
                await self._top_up()
                if not self._buffer:
                    self._arrived.clear()
                    if not self._buffer:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(self._arrived.wait(), 6.0)
                        silent = time.monotonic() - self._heard
                        if not self._buffer and self._requests and silent > _SILENCE:
                            log.warning(
                                "ordered read heard nothing from its consumer; recreating it",
                                extra={"stream": self.stream, "silent_seconds": round(silent)},
                            )
                            self._reset = True
                        continue
                batch: list[Msg] = []
                finished = False
                while self._buffer and len(batch) < self._batch:
                    msg = self._buffer.popleft()
                    sequence, cseq, pending = _ack_numbers(msg.reply)
                    if cseq != self._expected_cseq:
                        log.warning(
                            "gap in an ordered read; resuming after the last message",
                            extra={
                                "stream": self.stream,
                                "expected": self._expected_cseq,
                                "got": cseq,
                            },
                        )
                        self._reset = True
                        break
                    self._expected_cseq += 1
                    self._next_sequence = sequence + 1
                    if until_sequence is not None and sequence > until_sequence:
                        finished = True
                        break
                    batch.append(msg)
                    if (until_sequence is not None and sequence >= until_sequence) or (
                        not follow and pending == 0
                    ):
                        finished = True
                        break
                if batch:
                    yield batch
                if finished:
                    return
        finally:
            await self.close()

    async def _restart(self) -> bool:
        """Recreate the consumer after the last delivered message; False if JetStream refused
        (a cluster electing leaders after losing a node): the caller tries again shortly."""
        self._buffer.clear()
        old = self._consumer
        try:
            await self._create_consumer()
        except Exception as exc:
            log.warning(
                "could not recreate an ordered read's consumer; retrying",
                extra={"stream": self.stream, "error": repr(exc)},
            )
            return False
        self._reset = False
        if old:
            with contextlib.suppress(Exception):
                await self._js.delete_consumer(self.stream, old)
        return True

    async def close(self) -> None:
        """Stop reading and delete the server-side consumer."""
        if self._sub is not None:
            with contextlib.suppress(Exception):
                await self._sub.unsubscribe()
            self._sub = None
        if self._consumer is not None and self._nc.is_connected:
            # Tidiness only: the consumer expires on its own after `inactive_threshold`, so a
            # slow or absent server must not hold up whoever is closing the reader.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._js.delete_consumer(self.stream, self._consumer), 2.0)
        self._consumer = None
