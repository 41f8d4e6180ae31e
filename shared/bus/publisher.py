"""Pipelined JetStream publishing: many messages in flight, every acknowledgement checked.

nats-py's `publish_async` leaves its future pending forever when the server answers with an
error (its reply handler raises instead of failing the future), which would hang any batch that
meets a concurrency conflict or a full stream. This publisher resolves every future: with the
`PubAck`, with the server's `APIError`, or with `TimeoutError` after `timeout` seconds.

Messages that time out or meet "no responders" (a cluster electing a new leader) can be sent
again safely because every Stagger message carries `Nats-Msg-Id`; `publish_all` does so.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass

from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.js.api import PubAck
from nats.js.errors import APIError, NoStreamResponseError

NO_RESPONDERS = "503"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to publish."""

    subject: str
    payload: bytes
    headers: dict[str, str] | None = None


class PipelinedPublisher:
    """Publishes to JetStream with up to `max_in_flight` unacknowledged messages."""

    def __init__(self, nc: Client, *, max_in_flight: int = 4000, timeout: float = 10.0) -> None:
        self._nc = nc
        self._timeout = timeout
        self._slots = asyncio.Semaphore(max_in_flight)
        self._pending: dict[str, tuple[asyncio.Future[PubAck], asyncio.TimerHandle]] = {}
        self._prefix: str | None = None
        self._counter = itertools.count()
        self._lock = asyncio.Lock()

    async def _ensure_inbox(self) -> str:
        if self._prefix is None:
            async with self._lock:
                if self._prefix is None:
                    prefix = f"{self._nc.new_inbox()}."
                    await self._nc.subscribe(f"{prefix}*", cb=self._on_reply)
                    self._prefix = prefix
        return self._prefix

    async def publish(
        self, subject: str, payload: bytes, headers: dict[str, str] | None = None
    ) -> asyncio.Future[PubAck]:
        """Send one message; the returned future resolves with its acknowledgement."""
        prefix = await self._ensure_inbox()
        await self._slots.acquire()
        token = str(next(self._counter))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[PubAck] = loop.create_future()
        timer = loop.call_later(self._timeout, self._expire, token)
        self._pending[token] = (future, timer)
        try:
            await self._nc.publish(subject, payload, reply=prefix + token, headers=headers)
        except Exception as exc:
            self._settle(token, exc)
        return future

    async def publish_all(
        self, messages: Sequence[Outgoing], *, attempts: int = 5
    ) -> list[PubAck | APIError]:
        """Publish a batch, resending what was not acknowledged (timeouts, no responders).

        Returns one result per message: its `PubAck`, or the `APIError` the server answered
        (a conflict or a full stream is an answer, not something to resend).
        """
        results: list[PubAck | APIError | None] = [None] * len(messages)
        todo = list(range(len(messages)))
        for attempt in range(attempts):
            futures = [
                (i, await self.publish(m.subject, m.payload, m.headers))
                for i in todo
                for m in (messages[i],)
            ]
            retry = []
            for i, future in futures:
                try:
                    results[i] = await future
                except APIError as exc:
                    if isinstance(exc, NoStreamResponseError) or exc.code == 503:
                        retry.append(i)
                    else:
                        results[i] = exc
                except (TimeoutError, ConnectionError):
                    retry.append(i)
            if not retry:
                break
            todo = retry
            if attempt == attempts - 1:
                raise TimeoutError(
                    f"{len(retry)} messages unacknowledged after {attempts} attempts"
                )
            await asyncio.sleep(min(0.25 * 2**attempt, 3.0))
        return [r for r in results if r is not None]

    def _expire(self, token: str) -> None:
        self._settle(token, TimeoutError("no JetStream acknowledgement"))

    def _settle(self, token: str, outcome: PubAck | BaseException) -> None:
        entry = self._pending.pop(token, None)
        if entry is None:
            return
        future, timer = entry
        timer.cancel()
        self._slots.release()
        if future.done():
            return
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)

    async def _on_reply(self, msg: Msg) -> None:
        assert self._prefix is not None
        token = msg.subject[len(self._prefix) :]
        if msg.headers and msg.headers.get("Status") == NO_RESPONDERS:
            self._settle(token, NoStreamResponseError())
            return
        try:
            response = json.loads(msg.data)
        except ValueError:
            self._settle(token, APIError(description=f"unreadable acknowledgement: {msg.data!r}"))
            return
        error = response.get("error")
        if error:
            self._settle(
                token,
                APIError(
                    code=error.get("code"),
                    err_code=error.get("err_code"),
                    description=error.get("description"),
                ),
            )
            return
        self._settle(
            token,
            PubAck(
                stream=response["stream"],
                seq=response["seq"],
                duplicate=response.get("duplicate"),
            ),
        )


_publishers: dict[int, PipelinedPublisher] = {}


def publisher_for(nc: Client) -> PipelinedPublisher:
    """One shared publisher per connection (one reply subscription, one in-flight budget)."""
    key = id(nc)
    found = _publishers.get(key)
    if found is None or found._nc is not nc:
        found = PipelinedPublisher(nc)
        _publishers[key] = found
    return found
