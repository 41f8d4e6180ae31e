"""Find a PostgreSQL server for tests and give each test session its own database."""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import asyncpg
from sqlalchemy.engine import make_url


@dataclass
class PostgresServer:
    """Where to reach a PostgreSQL server, as an admin URL."""

    admin_url: str
    how: str


def _reachable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _docker_available() -> bool:
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


@contextlib.contextmanager
def find_postgres() -> Iterator[PostgresServer | str]:
    """Yield a server, or a string saying why there is none.

    Order: STAGGER_TEST_POSTGRES_URL; 127.0.0.1:5432 when it answers; testcontainers when a
    Docker engine runs.
    """
    url = os.environ.get("STAGGER_TEST_POSTGRES_URL")
    if url:
        yield PostgresServer(url, "STAGGER_TEST_POSTGRES_URL")
        return
    if _reachable("127.0.0.1", 5432):
        yield PostgresServer(
            "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres", "127.0.0.1:5432"
        )
        return
    if _docker_available():
        from testcontainers.postgres import PostgresContainer  # type: ignore[import-untyped]

        with PostgresContainer("postgres:16-alpine", driver="asyncpg") as container:
            yield PostgresServer(container.get_connection_url(), "testcontainers")
        return
    yield (
        "no STAGGER_TEST_POSTGRES_URL, nothing on 127.0.0.1:5432 and no Docker engine for "
        "testcontainers"
    )


def asyncpg_dsn(url: str, database: str | None = None) -> str:
    """The asyncpg form of a SQLAlchemy URL (optionally another database on that server)."""
    parsed = make_url(url)
    if database is not None:
        parsed = parsed.set(database=database)
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(admin_url: str, name: str | None = None) -> str:
    """Create database `name` (default: a fresh `stagger_test_…`), dropping a leftover of that
    name first; return its SQLAlchemy URL. Used by the tests and the benchmarks."""
    name = name or f"stagger_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return (
        make_url(admin_url)
        .set(database=name, drivername="postgresql+asyncpg")
        .render_as_string(hide_password=False)
    )


async def drop_database(admin_url: str, url: str) -> None:
    """Drop a database made by `create_database`, disconnecting whoever is still on it."""
    name = make_url(url).database
    conn = await asyncpg.connect(asyncpg_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()
