"""Calls answered by a child process: network I/O on a core of its own.

A gateway's outbound call (an HTTPS POST to an SMS provider, an SMTP transaction) costs about
as much CPU as everything else the gateway does for a message (intake, claim, limiter,
ledger, events), and in one process the two share one interpreter lock and take turns on one
core. A `CallProcess` runs the calls in a child with its own event loop: the parent sends a
call id and a request down a pipe, the child runs `handler.handle(request)` concurrently with
the others and sends back the call id and the answer, in whatever order they finish.

The parent keeps everything that makes delivery safe (the ledger row before the call and after
the answer). If the child dies, every call it had not answered gets `lost(reason)`, an answer
that says the outcome is unknown, so the caller reconciles instead of repeating blindly; the
next call starts a new child. The child stops when the parent closes the pipe or dies (EOF,
and the kernel's SIGTERM when its parent, the fork server, goes). Children are forked from
multiprocessing's fork server, which imports the handler's module once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import multiprocessing
import pickle
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any, Generic, Protocol, TypeVar

from shared.runtime.processes import stop_with_parent

log = logging.getLogger(__name__)

_STOP_TIMEOUT = 10.0

# The call id of the frame a child sends once its handler is built (call ids count from 0).
_READY = -1

Answer = TypeVar("Answer")


class Handler(Protocol):
    """What a child runs: one `handle` per request (concurrently), `close` at the end."""

    async def handle(self, request: Any) -> Any:
        """The answer to one request; must not raise for an expected failure."""

    async def close(self) -> None:
        """Release connections (the parent closed the pipe)."""


Factory = Callable[[Any], Awaitable[Handler]]
"""`factory(options) -> Handler`: module-level (pickled by name), run once in each child."""


class CallProcess(Generic[Answer]):
    """The parent's end: `call` hands a request to the child and awaits its answer."""

    def __init__(
        self,
        factory: Factory,
        options: Any,
        *,
        lost: Callable[[str], Answer],
        timeout: float,
        name: str,
    ) -> None:
        """`lost(reason)`: the answer for a call whose child died or never started (the
        request may or may not have been acted on). `timeout`: how long a call may take in
        the child before the parent stops waiting (a guard against a stuck child)."""
        self._factory = factory
        self._options = options
        self._lost = lost
        self._timeout = timeout
        self._name = name
        self._context = multiprocessing.get_context("forkserver")
        self._context.set_forkserver_preload([__name__, factory.__module__])
        self._calls = itertools.count()
        self._pending: dict[int, asyncio.Future[Answer]] = {}
        self._child: _Child | None = None
        self._starting = asyncio.Lock()
        self._closed = False
        self._reports: set[asyncio.Task[None]] = set()
        self.started_count = 0

    @property
    def pid(self) -> int | None:
        """The running child's process id, if one runs."""
        return self._child.process.pid if self._child is not None else None

    async def start(self) -> None:
        """Start the child now and wait until it answers calls (otherwise the first call
        does, and waits as long)."""
        await self._running()

    async def call(self, request: Any, not_sent: Callable[[str], Answer]) -> Answer:
        """The child's answer to `request`; never raises. `not_sent(reason)`: the answer when
        the request certainly never reached the child (closed, or no child could start)."""
        if self._closed:
            return not_sent("the service is stopping")
        try:
            child = await self._running()
        except Exception as exc:
            log.exception("%s: the child process did not start", self._name)
            return not_sent(f"the {self._name} process did not start: {exc!r}")
        call = next(self._calls)
        answer: asyncio.Future[Answer] = asyncio.get_running_loop().create_future()
        self._pending[call] = answer
        # A child already gone fails the write; its reader then sees EOF and answers `lost`.
        with contextlib.suppress(OSError):
            child.write((call, request))
        try:
            return await asyncio.wait_for(answer, self._timeout)
        except TimeoutError:
            return self._lost(f"the {self._name} process did not answer in time")
        finally:
            self._pending.pop(call, None)

    async def _running(self) -> _Child:
        if self._child is not None and self._child.alive:
            return self._child
        async with self._starting:
            if self._child is None or not self._child.alive:
                loop = asyncio.get_running_loop()
                child = await asyncio.to_thread(self._spawn)
                ready = child.watch(loop, self._answer, self._gone)
                self.started_count += 1
                # Calls go to a child whose handler is built: a call that waited for the child
                # to start would reach the network later than its caller thinks.
                try:
                    await asyncio.wait_for(ready, self._timeout)
                except BaseException:
                    child.unwatch(loop)
                    child.kill()
                    raise
                self._child = child
            return self._child

    def _spawn(self) -> _Child:
        parent_end, child_end = self._context.Pipe()
        process = self._context.Process(
            target=_serve,
            args=(child_end, self._factory, self._options),
            name=f"stagger-{self._name}",
            daemon=True,
        )
        try:
            process.start()
        finally:
            child_end.close()
        return _Child(process, parent_end)

    def _answer(self, call: int, answer: Any) -> None:
        waiting = self._pending.get(call)
        if waiting is None or waiting.done():
            return
        if isinstance(answer, BaseException):
            answer = self._lost(f"the call raised in the {self._name} process: {answer!r}")
        waiting.set_result(answer)

    def _gone(self, child: _Child) -> None:
        reason = f"the {self._name} process exited before answering"
        for waiting in self._pending.values():
            if not waiting.done():
                waiting.set_result(self._lost(reason))
        if not self._closed:
            task = asyncio.get_running_loop().create_task(self._report(child))
            self._reports.add(task)
            task.add_done_callback(self._reports.discard)

    async def _report(self, child: _Child) -> None:
        await asyncio.to_thread(child.process.join, _STOP_TIMEOUT)
        log.warning(
            "the %s process exited (code %s); the next call starts another",
            self._name,
            child.process.exitcode,
        )

    async def close(self) -> None:
        """Stop the child (once the caller has let its calls finish)."""
        self._closed = True
        child, self._child = self._child, None
        if child is not None:
            child.unwatch(asyncio.get_running_loop())
            self._gone(child)  # calls still waiting (none after a drain) stay unknown
            await asyncio.to_thread(child.stop)


class ChildExited(Exception):
    """The child process exited before it could answer calls."""


class _Child:
    """One child process and the parent's end of its pipe."""

    def __init__(self, process: Any, conn: Connection) -> None:
        self.process = process
        self.conn = conn
        self.alive = True
        self._watched = False

    def write(self, frame: tuple[Any, ...]) -> None:
        """One frame to the child (small: the pipe does not fill while the child lives)."""
        self.conn.send_bytes(pickle.dumps(frame, pickle.HIGHEST_PROTOCOL))

    def watch(
        self,
        loop: asyncio.AbstractEventLoop,
        answer: Callable[[int, Any], None],
        gone: Callable[[_Child], None],
    ) -> asyncio.Future[None]:
        """Read answers as they come; on EOF stop watching and tell `gone`. The future
        returned is done once the child's handler is built (an error if it exits first)."""
        ready: asyncio.Future[None] = loop.create_future()

        def readable() -> None:
            try:
                while self.conn.poll():
                    call, reply = pickle.loads(self.conn.recv_bytes())
                    if call == _READY:
                        if not ready.done():
                            ready.set_result(None)
                    else:
                        answer(call, reply)
            except (EOFError, OSError):
                self.unwatch(loop)
                if not ready.done():
                    ready.set_exception(ChildExited("the child process exited while starting"))
                gone(self)

        loop.add_reader(self.conn.fileno(), readable)
        self._watched = True
        return ready

    def unwatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Stop reading answers; before the pipe is closed, or the loop would go on watching
        its file descriptor number, which the next socket opened reuses."""
        self.alive = False
        if self._watched:
            self._watched = False
            loop.remove_reader(self.conn.fileno())

    def kill(self) -> None:
        """Kill the child at once (it never became ready)."""
        self.alive = False
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.kill()

    def stop(self) -> None:
        """Close the pipe (the child stops on EOF); kill it if it lingers."""
        self.alive = False
        with contextlib.suppress(OSError):
            self.conn.close()
        self.process.join(_STOP_TIMEOUT)
        if self.process.exitcode is None:
            self.process.kill()
            self.process.join(_STOP_TIMEOUT)


def _serve(conn: Connection, factory: Factory, options: Any) -> None:
    """The child: answer each request when its handler has."""
    stop_with_parent()
    asyncio.run(_serve_async(conn, factory, options))


async def _serve_async(conn: Connection, factory: Factory, options: Any) -> None:
    loop = asyncio.get_running_loop()
    handler = await factory(options)
    conn.send_bytes(pickle.dumps((_READY, None), pickle.HIGHEST_PROTOCOL))
    tasks: set[asyncio.Task[None]] = set()
    closed = asyncio.Event()

    async def run(call: int, request: Any) -> None:
        try:
            reply = await handler.handle(request)
        except Exception as exc:  # a bug; the caller learns the outcome is unknown
            log.exception("a call raised in the child process")
            reply = exc
        try:
            blob = pickle.dumps((call, reply), pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            blob = pickle.dumps((call, RuntimeError(f"unpicklable answer: {exc!r}")))
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            conn.send_bytes(blob)

    def readable() -> None:
        try:
            while conn.poll():
                call, request = pickle.loads(conn.recv_bytes())
                task = loop.create_task(run(call, request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
        except (EOFError, OSError):
            loop.remove_reader(conn.fileno())
            closed.set()

    loop.add_reader(conn.fileno(), readable)
    await closed.wait()
    # The parent closed the pipe after its calls finished: whatever still runs has nobody to
    # answer to (and the parent already counts it as unknown).
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await handler.close()
