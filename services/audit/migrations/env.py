from alembic import context

from services.audit.adapters.trail import metadata
from shared.db.migrate import run_env

run_env(context, metadata)
