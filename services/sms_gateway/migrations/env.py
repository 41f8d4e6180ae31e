from alembic import context

from services.sms_gateway.tables import metadata
from shared.db.migrate import run_env

run_env(context, metadata)
