from alembic import context

from services.config.adapters import batch_tables  # noqa: F401  (registers the batch tables)
from services.config.adapters.read_model import metadata
from shared.db.migrate import run_env

run_env(context, metadata)
