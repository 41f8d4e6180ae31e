"""Email gateway: a message is keyed by (message id, site), so another site's id never blocks it.

Revision ID: email_0004
Revises: email_0003

Existing rows keep their keys (ids were unique across sites until now). A downgrade fails if
two sites' messages share an id by then.
"""

import sqlalchemy as sa
from alembic import op

revision = "email_0004"
down_revision = "email_0003"
branch_labels = None
depends_on = None

TABLE = "email_messages"


def _set_primary_key(columns: list[str]) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a primary key: batch mode rebuilds the table (rows, indexes).
        with op.batch_alter_table(TABLE, recreate="always") as batch:
            batch.create_primary_key(f"{TABLE}_pkey", columns)
    else:
        op.drop_constraint(f"{TABLE}_pkey", TABLE, type_="primary")
        op.create_primary_key(f"{TABLE}_pkey", TABLE, columns)


def upgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        # The rebuilt table takes site_id into its (unnamed) key, as a fresh table has it.
        site = sa.Column("site_id", sa.String(63), primary_key=True, nullable=False)
        with op.batch_alter_table(TABLE, recreate="always", reflect_args=(site,)):
            pass
        return
    _set_primary_key(["message_id", "site_id"])


def downgrade() -> None:
    _set_primary_key(["message_id"])
