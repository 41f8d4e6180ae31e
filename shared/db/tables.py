"""The tables of the shared migration chain, as the code expects them.

`projection_positions` is read and written with plain SQL (`shared.db.projection`); this
definition is what `tests/integration/test_schema_drift.py` holds the migrated schema to.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

projection_positions = sa.Table(
    "projection_positions",
    metadata,
    sa.Column("projection", sa.String(200), primary_key=True),
    sa.Column("position", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
)
"""How far each projection has applied its stream (compare-and-set on `position`)."""
