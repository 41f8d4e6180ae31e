import sqlalchemy as sa
from alembic import context

from services.config.adapters import (  # noqa: F401  (registers their tables)
    alert_tables,
    batch_tables,
    replies,
)
from services.config.adapters.read_model import metadata as read_model
from services.config.staff.tables import metadata as staff
from shared.db.migrate import run_env

# The config database: the read model (with the batch tables) and the staff accounts.
metadata = sa.MetaData()
for table in (*read_model.tables.values(), *staff.tables.values()):
    table.to_metadata(metadata)

run_env(context, metadata)
