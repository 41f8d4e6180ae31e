from alembic import context

from services.scheduler.adapters.projection import metadata
from shared.db.migrate import run_env

run_env(context, metadata)
