"""The migrations build exactly the tables the code declares, on SQLite and on PostgreSQL.

Every service's database is migrated from empty (the shared chain, then the service's) and
compared with the service's SQLAlchemy metadata plus the shared tables. A revision carries its
own DDL, so a column added to the code without a new revision shows up here as a difference.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from services.audit.adapters.trail import metadata as audit_metadata
from services.config.adapters import (  # noqa: F401  (on the config metadata)
    alert_tables,
    batch_tables,
    replies,
)
from services.config.adapters.read_model import metadata as read_model_metadata
from services.config.staff.tables import metadata as staff_metadata
from services.email_gateway.adapters.all_tables import metadata as email_metadata
from services.scheduler.adapters.projection import metadata as scheduler_metadata
from services.sms_gateway.adapters.tables import metadata as sms_metadata
from shared.db import tables as shared_tables
from shared.db.engine import create_engine
from shared.db.migrate import migrate, service_chain
from tests.support.schema_drift import combined, schema_differences

# The config database holds the read model (with the batch tables) and the staff accounts.
config_metadata = combined([read_model_metadata, staff_metadata])

SERVICES_DIR = Path(__file__).resolve().parents[2] / "services"

CODE_TABLES: dict[str, sa.MetaData] = {
    "audit": audit_metadata,
    "config": config_metadata,
    "email_gateway": email_metadata,
    "scheduler": scheduler_metadata,
    "sms_gateway": sms_metadata,
}
"""Each service with a migration chain → the tables its code reads and writes."""


async def _differences(database_url: str, service: str, metadata: sa.MetaData) -> list[str]:
    engine = create_engine(database_url)
    try:
        await migrate(engine, [service_chain(service, SERVICES_DIR / service / "migrations")])
        async with engine.connect() as conn:
            return await conn.run_sync(
                schema_differences, combined([shared_tables.metadata, metadata])
            )
    finally:
        await engine.dispose()


def test_every_migration_chain_is_checked() -> None:
    chains = {path.parent.parent.name for path in SERVICES_DIR.glob("*/migrations/versions")}
    assert chains == set(CODE_TABLES), "add the new service's metadata to CODE_TABLES"


@pytest.mark.parametrize("service", sorted(CODE_TABLES))
async def test_migrated_schema_is_the_schema_the_code_declares(
    service: str, database_url: str
) -> None:
    found = await _differences(database_url, service, CODE_TABLES[service])
    assert not found, (
        f"{service}: the migrated database differs from the tables in the code. Add a new "
        "revision with the DDL (never edit a released one), or fix the table definition:\n"
        + "\n".join(found)
    )


async def test_a_table_definition_the_migrations_do_not_build_is_reported(
    database_url: str,
) -> None:
    drifted = sa.MetaData()
    for table in scheduler_metadata.tables.values():
        table.to_metadata(drifted)
    sites = drifted.tables["scheduler_sites"]
    sites.append_column(sa.Column("paused", sa.Boolean, nullable=True))
    sites.c.group_id.primary_key = True
    sites.primary_key = sa.PrimaryKeyConstraint(sites.c.site_id, sites.c.group_id)
    sa.Table("scheduler_plans", drifted, sa.Column("plan_id", sa.String(63), primary_key=True))

    found = "\n".join(await _differences(database_url, "scheduler", drifted))

    assert "add_column" in found and "paused" in found
    assert "add_table" in found and "scheduler_plans" in found
    assert "primary key of scheduler_sites" in found
