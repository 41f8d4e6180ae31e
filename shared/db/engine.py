"""SQLAlchemy 2 async engines for SQLite (embedded default) and PostgreSQL (production)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlalchemy import create_engine as sa_create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool

# Page cache per SQLite connection, in KiB (SQLite's default is 2 MB).
SQLITE_CACHE_KIB = 8192


def create_engine(url: str, **kwargs: Any) -> AsyncEngine:
    """An async engine tuned for the backend.

    SQLite runs in WAL mode with a busy timeout so that several processes (gateway replicas on
    one machine) can share a file; `synchronous=NORMAL` keeps commits durable across a process
    crash (SIGKILL), which is the failure the delivery guarantees are about.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        database = parsed.database
        if database and database != ":memory:":
            Path(database).parent.mkdir(parents=True, exist_ok=True)
        # Pool sizing is a PostgreSQL matter; SQLite's default pool suits its file locking.
        # (A fixed pool of 15 without overflow was tried against the load test's memory
        # growth and grew faster: see docs/operations.md.)
        kwargs.pop("pool_size", None)
        kwargs.pop("max_overflow", None)
        engine = create_async_engine(
            url,
            connect_args={"timeout": 30},
            poolclass=NullPool if kwargs.pop("null_pool", False) else None,
            **kwargs,
        )
        _tune_sqlite(engine.sync_engine)
        return engine
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 10)
    kwargs.setdefault("pool_pre_ping", True)
    return create_async_engine(url, **kwargs)


def _tune_sqlite(engine: Engine) -> None:
    """Pragmas and transaction start for every connection of a SQLite engine."""

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event, not the driver, decide how transactions start.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA busy_timeout=30000")
        # Every pooled connection keeps its own page cache, and a busy gateway holds a
        # dozen: 64 MB each let a 200,000-message load grow the process by 300 MB, while
        # appends (the audit rebuild) run as fast with 8 MB. Fewer WAL checkpoints are
        # what makes bulk appends cheap (durability is unchanged).
        cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
        cursor.execute("PRAGMA temp_store=MEMORY")
        cursor.execute("PRAGMA wal_autocheckpoint=10000")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        # Deferred, so readers never wait for writers under WAL. Code that reads and then
        # writes in one transaction must write first (see ProjectionRunner._apply_batch):
        # a deferred reader cannot later upgrade to a writer once another commit landed.
        conn.exec_driver_sql("BEGIN")


def sqlite_file_url(engine: AsyncEngine) -> str | None:
    """The synchronous-driver URL of `engine`'s SQLite file; None for other databases and for
    in-memory SQLite (which another connection cannot share)."""
    url = engine.url
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    return url.set(drivername="sqlite+pysqlite").render_as_string(hide_password=False)


def sqlite_sync_engine(url: str) -> Engine:
    """A synchronous engine on a SQLite file, tuned like the service's own, with one
    connection: for a writer that runs whole transactions outside the event loop (see
    `shared.db.writer_process`)."""
    writer = sa_create_engine(
        url,
        connect_args={"timeout": 30, "check_same_thread": False},
        pool_size=1,
        max_overflow=0,
    )
    _tune_sqlite(writer)
    return writer


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    """Sessions that keep loaded objects usable after commit."""
    return async_sessionmaker(engine, expire_on_commit=False)
