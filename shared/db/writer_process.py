"""A projection's SQLite transactions, run in a child process.

A projection runner overlaps two stages: it reads and prepares batch k+1 while batch k
commits. With the commit in a worker thread both stages share one interpreter lock, and the
audit rebuild measured as much CPU as wall time: the stages took turns instead of
overlapping (hashing and binding rows hold the lock as much as reading does). A child process
has an interpreter of its own, so the parent reads and prepares on one core while the child
chains and inserts on the other.

The child owns one synchronous connection to the SQLite file and one instance of the
projection, created for it (so the projection's in-memory state, e.g. the audit chain heads,
lives where the writes happen). For each payload the parent sends, it runs
`transaction(engine, projection, payload)` and answers with the result or the error's
traceback; payloads are handled strictly in order. Children are forked from
multiprocessing's fork server (a clean, single-threaded process started once, with the
projection's module imported), so starting one takes milliseconds and never forks the
service's threads.

The child stops when the parent closes the pipe or dies (EOF; the kernel also sends it
SIGTERM when its parent, the fork server, goes). A transaction interrupted that way is rolled
back by SQLite, and the runner starts over from the stored position.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import multiprocessing
import pickle
import threading
import traceback
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from sqlalchemy import Engine

from shared.db.engine import sqlite_sync_engine
from shared.runtime.processes import stop_with_parent

Transaction = Callable[[Engine, Any, Any], Any]
"""`transaction(engine, projection, payload) -> result`: module-level (it is pickled by name)."""

_STOP_TIMEOUT = 10.0


class WriterFailed(RuntimeError):
    """The writer process raised (the message holds its traceback) or died."""


class WriterProcess:
    """One child process running `transaction` for each payload submitted, in order.

    Submitting does not wait: payloads queue for the pipe and the child takes them one after
    another, so the caller can prepare the next batch (and the one after) meanwhile. Answers
    come back in the same order. A sender thread writes the payloads (a batch is megabytes:
    through the event loop it would trickle out a socket buffer at a time, only when the loop
    got round to it); the loop reads the answers, which are a few bytes each.
    """

    def __init__(self, url: str, projection_type: type, transaction: Transaction) -> None:
        context = multiprocessing.get_context("forkserver")
        # Only read when the fork server starts (once per process): the first projection type
        # decides, and every later child still imports what it needs by itself.
        context.set_forkserver_preload([__name__, projection_type.__module__])
        self._conn, child_end = context.Pipe()
        self._process = context.Process(
            target=_serve,
            args=(url, projection_type, transaction, child_end),
            name=f"stagger-writer-{projection_type.__name__}",
            daemon=True,
        )
        self._loop = asyncio.get_running_loop()
        self._answers: deque[asyncio.Future[Any]] = deque()
        self._sender = ThreadPoolExecutor(1, thread_name_prefix="stagger-writer-send")
        self._ready = threading.Event()
        self._closing: asyncio.Future[None] | None = None
        self._pid: int | None = None
        # Starting the first child also starts the fork server (a Python start-up, ~0.5 s):
        # in a thread, so that the runner reads its first batches meanwhile. The sender
        # thread sends nothing before that.
        self._started = asyncio.ensure_future(self._start(child_end))

    async def _start(self, child_end: Connection) -> None:
        try:
            await asyncio.to_thread(self._process.start)
            self._pid = self._process.pid
        except BaseException as exc:
            self._fail(f"the writer process did not start: {exc!r}")
            raise
        else:
            self._loop.add_reader(self._conn.fileno(), self._on_answer)
        finally:
            child_end.close()
            self._ready.set()

    @property
    def pid(self) -> int | None:
        """The child's process id (None until it has started)."""
        return self._pid

    async def started(self) -> None:
        """Wait until the child runs (raises if it could not be started)."""
        await asyncio.shield(self._started)

    def submit(self, payload: Any) -> asyncio.Future[Any]:
        """Send `payload`; the future gets `transaction`'s result or `WriterFailed`."""
        if self._closing is not None:
            raise WriterFailed("the writer process is closed")
        answer: asyncio.Future[Any] = self._loop.create_future()
        self._answers.append(answer)
        blob = _dumps(payload)
        # One sender thread: payloads leave in the order they were submitted.
        self._loop.run_in_executor(self._sender, self._send, blob)
        return answer

    def _send(self, blob: bytes) -> None:
        self._ready.wait()
        if self._pid is None:
            return  # it never started: `_start` failed what is awaited
        # If the child is gone, the loop reads EOF and fails what is awaited.
        with contextlib.suppress(OSError):
            self._conn.send_bytes(blob)

    def _on_answer(self) -> None:
        try:
            while self._conn.poll():
                status, result = pickle.loads(self._conn.recv_bytes())
                answer = self._answers.popleft()
                if answer.done():
                    continue
                if status == "ok":
                    answer.set_result(result)
                else:
                    answer.set_exception(WriterFailed(result))
        except (EOFError, OSError) as exc:
            self._loop.remove_reader(self._conn.fileno())
            self._fail(f"the writer process is gone (exit code {self._process.exitcode}): {exc!r}")

    def _fail(self, why: str) -> None:
        while self._answers:
            answer = self._answers.popleft()
            if not answer.done():
                answer.set_exception(WriterFailed(why))

    async def close(self) -> None:
        """Let the child finish what it was sent, then stop it (killed after a timeout, or at
        once if answers were still awaited: nobody will read them). Safe to call again."""
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        with contextlib.suppress(BaseException):
            await self._started
        started = self._pid is not None
        if started and self._answers:
            # Payloads the child has not answered (even if their caller gave up waiting):
            # nobody wants their outcome, and a batch half-done is rolled back by SQLite.
            self._process.kill()
        if started and not self._conn.closed:
            self._loop.remove_reader(self._conn.fileno())
        await asyncio.to_thread(self._sender.shutdown)
        self._conn.close()
        self._fail("the writer process was closed")
        if not started:
            return
        await asyncio.to_thread(self._process.join, _STOP_TIMEOUT)
        if self._process.exitcode is None:
            self._process.kill()
            await asyncio.to_thread(self._process.join, _STOP_TIMEOUT)
        self._process.close()


def _serve(url: str, projection_type: type, transaction: Transaction, conn: Connection) -> None:
    """The child: answer each payload with ("ok", result) or ("error", traceback)."""
    stop_with_parent()
    engine = sqlite_sync_engine(url)
    projection = projection_type()
    try:
        while True:
            try:
                payload = pickle.loads(conn.recv_bytes())
            except (EOFError, OSError):
                return
            try:
                answer: tuple[str, Any] = ("ok", transaction(engine, projection, payload))
            except Exception:
                answer = ("error", traceback.format_exc())
            try:
                conn.send_bytes(_dumps(answer))
            except OSError:
                return
    finally:
        engine.dispose()


def _dumps(value: Any) -> bytes:
    """`value` pickled without the memo: a batch is thousands of distinct strings, and
    remembering each one (for back-references a batch never has) cost more than writing it.
    Values must not refer to themselves."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=pickle.HIGHEST_PROTOCOL)
    pickler.fast = True
    pickler.dump(value)
    return buffer.getvalue()
