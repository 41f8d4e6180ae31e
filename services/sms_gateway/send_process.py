"""Provider send calls, made by a child process.

An SMS send is one HTTPS POST, and with httpx that request is the largest single cost of a
message in the gateway: about as much CPU as everything else the gateway does for it (intake,
claim, limiter, ledger, events) together. In one process both share one interpreter lock and
one core. Here the POSTs run in a child process with its own event loop and HTTP client, so the
gateway's queue and ledger work and the provider calls run on two cores.

What crosses the pipe is small: a provider's spec once (kind, account, opened secret, URL),
then for each send a call id, the spec's number and the `Outbound`; the answer is the call id
and the adapter's `SendReply`. Answers come back in any order (sends run concurrently).

Nothing about delivery guarantees changes: the ledger row is written before the call and after
the answer, in the gateway, as before. If the child dies, every call it had not answered is
`ambiguous` — the request may have reached the provider — so the gateway looks the message up
before any resend, exactly as after a timeout; the next send starts a new child. The child stops
when the gateway closes the pipe or dies (EOF, and the kernel's SIGTERM on parent death).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import pickle
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import httpx

from services.sms_gateway.providers import ProviderSpec
from services.sms_gateway.providers.base import Outbound, Provider, SendReply
from shared.runtime.processes import stop_with_parent

log = logging.getLogger(__name__)

_STOP_TIMEOUT = 10.0


@dataclass(frozen=True)
class ClientOptions:
    """How the child's HTTP client is set up (the gateway's own client has the same)."""

    timeout: float
    max_connections: int
    keepalive_expiry: float

    def client(self) -> httpx.AsyncClient:
        """A client with these options (proxies from the environment ignored)."""
        return httpx.AsyncClient(
            timeout=self.timeout,
            limits=httpx.Limits(
                max_connections=self.max_connections,
                max_keepalive_connections=self.max_connections,
                keepalive_expiry=self.keepalive_expiry,
            ),
            trust_env=False,
        )


class SendProcess:
    """The parent's end: `send` hands a call to the child and awaits its answer."""

    def __init__(self, options: ClientOptions) -> None:
        self._options = options
        self._context = multiprocessing.get_context("forkserver")
        # The fork server imports this module once; children fork from it in milliseconds.
        self._context.set_forkserver_preload([__name__])
        self._calls = itertools.count()
        self._pending: dict[int, asyncio.Future[SendReply]] = {}
        self._child: _Child | None = None
        self._starting: asyncio.Lock | None = None
        self._closed = False
        self._reports: set[asyncio.Task[None]] = set()
        self.started_count = 0

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        return self._child.process.pid if self._child is not None else None

    async def start(self) -> None:
        """Start the child now (otherwise the first send does)."""
        await self._running()

    async def send(self, spec: ProviderSpec, message: Outbound) -> SendReply:
        """The provider's answer to one send, made by the child (never raises)."""
        if self._closed:
            return SendReply("not_sent", detail="the gateway is stopping")
        try:
            child = await self._running()
        except Exception as exc:  # could not fork: nothing was sent
            log.exception("the send process did not start")
            return SendReply("not_sent", detail=f"the send process did not start: {exc!r}")
        loop = asyncio.get_running_loop()
        call = next(self._calls)
        answer: asyncio.Future[SendReply] = loop.create_future()
        self._pending[call] = answer
        try:
            number = child.spec_number(spec)
            child.write(("send", call, number, message))
        except OSError:
            pass  # the child is gone: the reader sees EOF and answers `ambiguous`
        try:
            # The child's client gives up after `timeout`; this only guards a stuck child.
            return await asyncio.wait_for(asyncio.shield(answer), self._options.timeout + 30)
        except TimeoutError:
            return SendReply("ambiguous", detail="the send process did not answer in time")
        finally:
            self._pending.pop(call, None)

    async def _running(self) -> _Child:
        if self._child is not None and self._child.alive:
            return self._child
        if self._starting is None:
            self._starting = asyncio.Lock()
        async with self._starting:
            if self._child is None or not self._child.alive:
                self._child = await asyncio.to_thread(self._spawn)
                self._child.watch(asyncio.get_running_loop(), self._answer, self._gone)
                self.started_count += 1
            return self._child

    def _spawn(self) -> _Child:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(child_end, self._options),
            name="stagger-sms-sends",
            daemon=True,
        )
        try:
            process.start()
        finally:
            child_end.close()
        return _Child(process, parent_end)

    def _answer(self, call: int, reply: SendReply) -> None:
        answer = self._pending.get(call)
        if answer is not None and not answer.done():
            answer.set_result(reply)

    def _gone(self, child: _Child) -> None:
        detail = "the send process exited before the provider's answer came back"
        for answer in self._pending.values():
            if not answer.done():
                answer.set_result(SendReply("ambiguous", detail=detail))
        if not self._closed:
            task = asyncio.get_running_loop().create_task(self._report(child))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def _report(self, child: _Child) -> None:
        await asyncio.to_thread(child.process.join, _STOP_TIMEOUT)
        log.warning(
            "the send process exited (code %s); the next send starts another",
            child.process.exitcode,
        )

    async def close(self) -> None:
        """Stop the child (after the gateway has let its sends finish)."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            child.unwatch(asyncio.get_running_loop())
            self._gone(child)  # sends still waiting (none after a drain) stay uncertain
            await asyncio.to_thread(child.stop)


class _Child:
    """One child process and the parent's end of its pipe."""

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.alive = True
        self._watched = False
        self._specs: dict[ProviderSpec, int] = {}

    def spec_number(self, spec: ProviderSpec) -> int:
        """The spec's number in this child, sending the spec first if it is new to it."""
        number = self._specs.get(spec)
        if number is None:
            number = self._specs[spec] = len(self._specs)
            self.write(("spec", number, spec))
        return number

    def write(self, frame: tuple[Any, ...]) -> None:
        """One frame to the child (small: the pipe never fills with a live child)."""
        self.conn.send_bytes(pickle.dumps(frame, pickle.HIGHEST_PROTOCOL))

    def watch(self, loop: asyncio.AbstractEventLoop, answer: Any, gone: Any) -> None:
        """Read answers as they come; on EOF mark the child dead and tell `gone`."""

        def readable() -> None:
            try:
                while self.conn.poll():
                    call, reply = pickle.loads(self.conn.recv_bytes())
                    answer(call, reply)
            except (EOFError, OSError):
                self.unwatch(loop)
                gone(self)

        loop.add_reader(self.conn.fileno(), readable)
        self._watched = True

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop reading answers; before the pipe is closed, or the loop would go on watching
        its file descriptor number, which the next socket opened reuses."""
        self.alive = False
        if self._watched:
            self._watched = False
            loop.remove_reader(self.conn.fileno())

    def stop(self) -> None:
        """Close the pipe (the child stops on EOF); kill it if it lingers."""
        self.alive = False
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.join(_STOP_TIMEOUT)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(_STOP_TIMEOUT)


def _serve(conn: Connection, options: ClientOptions) -> None:
    """The child: run each send the parent asks for, answer when the provider has."""
    stop_with_parent()
    asyncio.run(_serve_async(conn, options))


async def _serve_async(conn: Connection, options: ClientOptions) -> None:
    loop = asyncio.get_running_loop()
    client = options.client()
    providers: dict[int, Provider] = {}
    tasks: set[asyncio.Task[None]] = set()
    closed = asyncio.Event()

    async def send(call: int, provider: Provider, message: Outbound) -> None:
        try:
            reply = await provider.send(message)  # adapters never raise for provider failures
        except Exception as exc:  # a bug: the request may have left, so it is looked up
            log.exception("a provider send raised")
            reply = SendReply("ambiguous", detail=f"the send raised {exc!r}"[:300])
        with contextlib.suppress(OSError):  # parent gone: nobody to tell
            conn.send_bytes(pickle.dumps((call, reply), pickle.HIGHEST_PROTOCOL))

    def readable() -> None:
        try:
            while conn.poll():
                frame = pickle.loads(conn.recv_bytes())
                if frame[0] == "spec":
                    _, number, spec = frame
                    providers[number] = spec.build(client)
                else:
                    _, call, number, message = frame
                    task = loop.create_task(send(call, providers[number], message))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            closed.set()

    loop.add_reader(conn.fileno(), readable)
    await closed.wait()
    # The parent closed the pipe: it waited for its sends first, so whatever still runs has
    # no one to answer to (and is `ambiguous` to the gateway, which looks it up).
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await client.aclose()
