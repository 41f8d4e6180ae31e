from alembic import context

from shared.db.migrate import run_env

run_env(context)
