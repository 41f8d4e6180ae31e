from alembic import context

from services.audit.records import metadata
from shared.db.migrate import run_env

run_env(context, metadata)
