"""The SQLite writer process: answers in order, errors named, a dead child never hangs the
parent, closing stops it."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import Engine

from shared.db.writer_process import WriterFailed, WriterProcess
from tests.support.waiting import wait_until

notes = sa.Table(
    "notes",
    sa.MetaData(),
    sa.Column("n", sa.Integer, primary_key=True),
    sa.Column("pid", sa.Integer),
)


class NoteTaker:
    """What the child builds once: counts the payloads it was given."""

    def __init__(self) -> None:
        self.taken = 0


def write_note(engine: Engine, taker: NoteTaker, payload: Any) -> tuple[int, int]:
    """Stores `payload` (an int) in its own transaction; "fail" raises, "hang" never returns."""
    if payload == "fail":
        raise ValueError("payload 'fail' refused on purpose")
    if payload == "hang":
        threading.Event().wait()
    taker.taken += 1
    with engine.begin() as conn:
        conn.execute(sa.insert(notes).values(n=payload, pid=os.getpid()))
    return payload, taker.taken


def _database(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'notes.db'}"
    engine = sa.create_engine(url)
    notes.metadata.create_all(engine)
    engine.dispose()
    return url


def _stored(url: str) -> list[tuple[int, int]]:
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.execute(sa.select(notes).order_by(notes.c.n))]
    finally:
        engine.dispose()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A child that exited but was not reaped yet is a zombie: gone for our purpose.
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def test_answers_come_back_in_order_from_one_child(tmp_path: Path) -> None:
    url = _database(tmp_path)
    writer = WriterProcess(url, NoteTaker, write_note)
    try:
        answers = [writer.submit(n) for n in range(50)]
        assert await asyncio.gather(*answers) == [(n, n + 1) for n in range(50)]
        pid = writer.pid
    finally:
        await writer.close()
    assert pid is not None and pid != os.getpid()
    assert _stored(url) == [(n, pid) for n in range(50)]


async def test_a_failing_transaction_names_its_error_and_the_next_one_runs(
    tmp_path: Path,
) -> None:
    url = _database(tmp_path)
    writer = WriterProcess(url, NoteTaker, write_note)
    try:
        first, failing, after = writer.submit(1), writer.submit("fail"), writer.submit(2)
        assert await first == (1, 1)
        with pytest.raises(WriterFailed, match="payload 'fail' refused on purpose"):
            await failing
        assert await after == (2, 2)
    finally:
        await writer.close()
    assert [n for n, _ in _stored(url)] == [1, 2]


async def test_a_killed_child_fails_what_is_awaited_and_close_returns(tmp_path: Path) -> None:
    url = _database(tmp_path)
    writer = WriterProcess(url, NoteTaker, write_note)
    try:
        assert await writer.submit(1) == (1, 1)
        stuck, queued = writer.submit("hang"), writer.submit(2)
        assert writer.pid is not None
        os.kill(writer.pid, signal.SIGKILL)
        with pytest.raises(WriterFailed, match="gone"):
            await asyncio.wait_for(stuck, 30)
        with pytest.raises(WriterFailed):
            await asyncio.wait_for(queued, 30)
        await asyncio.wait_for(writer.close(), 30)
        with pytest.raises(WriterFailed, match="closed"):
            writer.submit(3)
    finally:
        await asyncio.wait_for(writer.close(), 30)
    assert [n for n, _ in _stored(url)] == [1]


async def test_closing_while_a_transaction_hangs_stops_the_child(tmp_path: Path) -> None:
    writer = WriterProcess(_database(tmp_path), NoteTaker, write_note)
    stuck = writer.submit("hang")
    await writer.started()
    pid = writer.pid
    assert pid is not None
    await asyncio.wait_for(writer.close(), 30)
    with pytest.raises(WriterFailed):
        await stuck
    await wait_until(lambda: not _alive(pid), timeout=10, message="writer child gone")


async def test_closing_an_idle_writer_lets_the_child_exit(tmp_path: Path) -> None:
    writer = WriterProcess(_database(tmp_path), NoteTaker, write_note)
    assert await writer.submit(7) == (7, 1)
    pid = writer.pid
    assert pid is not None
    await asyncio.wait_for(writer.close(), 30)
    await wait_until(lambda: not _alive(pid), timeout=10, message="writer child gone")
