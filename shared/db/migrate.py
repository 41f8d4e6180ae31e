"""Schema migrations with Alembic, one chain per owner, safe for replicas starting together.

Every service owns its tables and its own migration chain (its own version table), and the
shared chain holds what all projections need (the position table). `migrate` applies the chains
in order inside one lock, so two replicas starting at once never race on DDL.
"""

from __future__ import annotations

import zlib
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import AsyncEngine

SHARED_MIGRATIONS = Path(__file__).parent / "migrations"


@dataclass(frozen=True)
class MigrationChain:
    """A directory of Alembic revisions and the table recording how far it got."""

    name: str
    script_location: Path
    version_table: str


SHARED_CHAIN = MigrationChain("shared", SHARED_MIGRATIONS, "alembic_version_shared")


def service_chain(service: str, migrations_dir: Path) -> MigrationChain:
    """The migration chain of one service."""
    return MigrationChain(service, migrations_dir, f"alembic_version_{service}")


async def migrate(engine: AsyncEngine, chains: list[MigrationChain]) -> None:
    """Bring the database to the head of every chain (shared chain first)."""
    ordered = [SHARED_CHAIN, *[c for c in chains if c.name != SHARED_CHAIN.name]]
    async with engine.connect() as conn:
        await conn.run_sync(_upgrade_all, ordered)
        await conn.commit()


def _upgrade_all(connection: Connection, chains: list[MigrationChain]) -> None:
    postgres = connection.dialect.name == "postgresql"
    lock_key = zlib.crc32(b"stagger-migrations")
    if postgres:
        connection.execute(text("SELECT pg_advisory_lock(:k)"), {"k": lock_key})
        connection.commit()
    try:
        for chain in chains:
            config = Config()
            config.set_main_option("script_location", str(chain.script_location))
            config.set_main_option("version_table", chain.version_table)
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
            connection.commit()
    finally:
        if postgres:
            connection.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": lock_key})
            connection.commit()


class MigrationEnvironment(Protocol):
    """What `run_env` uses of Alembic's environment: the `alembic.context` module (a proxy
    whose stub declares module-level functions) or an `EnvironmentContext`."""

    config: Config

    def configure(
        self,
        connection: Connection | None = ...,
        *,
        target_metadata: Any = ...,
        version_table: str | None = ...,
        render_as_batch: bool = ...,
    ) -> None: ...

    def begin_transaction(self) -> AbstractContextManager[Any]: ...

    def run_migrations(self) -> None: ...


def run_env(context: MigrationEnvironment, target_metadata: Any = None) -> None:
    """Body of every chain's env.py: run on the connection `migrate` handed over."""
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("Stagger migrations run through shared.db.migrate.migrate()")
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        version_table=context.config.get_main_option("version_table") or "alembic_version",
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
