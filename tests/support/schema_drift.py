"""How a migrated database differs from the tables the code declares.

Alembic's autogenerate comparison finds missing or extra tables, columns and indexes and
changed types, nullability and server defaults; it does not look at primary keys, so those are
compared here as well (the site-keyed ledger changed one).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext


def _not_a_version_table(name: str | None, type_: str, parent_names: Any) -> bool:
    # Every chain keeps its own `alembic_version_<chain>`; they belong to Alembic, not the code.
    return not (type_ == "table" and name is not None and name.startswith("alembic_version"))


def combined(metadatas: Iterable[sa.MetaData]) -> sa.MetaData:
    """One MetaData holding the tables of all of `metadatas` (a database serves several)."""
    result = sa.MetaData()
    for metadata in metadatas:
        for table in metadata.tables.values():
            table.to_metadata(result)
    return result


def _primary_keys(connection: sa.Connection, metadata: sa.MetaData) -> list[str]:
    inspector = sa.inspect(connection)
    existing = set(inspector.get_table_names())
    found = []
    for table in metadata.tables.values():
        if table.name not in existing:
            continue  # reported as a missing table already
        migrated = set(inspector.get_pk_constraint(table.name)["constrained_columns"])
        declared = {column.name for column in table.primary_key.columns}
        if migrated != declared:
            found.append(
                f"primary key of {table.name}: migrated {sorted(migrated)}, "
                f"code declares {sorted(declared)}"
            )
    return found


def schema_differences(connection: sa.Connection, metadata: sa.MetaData) -> list[str]:
    """Every difference between the database on `connection` and `metadata`, one per line
    (empty when the migrations build exactly the tables the code declares)."""
    context = MigrationContext.configure(
        connection,
        opts={
            "compare_type": True,
            "compare_server_default": True,
            "include_name": _not_a_version_table,
        },
    )
    return [repr(diff) for diff in compare_metadata(context, metadata)] + _primary_keys(
        connection, metadata
    )
