from alembic import context

from services.email_gateway.adapters.tables import metadata
from shared.db.migrate import run_env

run_env(context, metadata)
