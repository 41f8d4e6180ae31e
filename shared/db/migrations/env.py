from alembic import context

from shared.db.migrate import run_env
from shared.db.tables import metadata

run_env(context, metadata)
