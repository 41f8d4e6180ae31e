"""Audit: the message read model is keyed by (message id, site), like the gateways' ledger,
so one site's message never hides another site's message of the same id.

Revision ID: audit_0002
Revises: audit_0001

Rows without a site (none are written: every dispatch event names its site) are dropped.
A downgrade fails if two sites' messages share an id by then.
"""

import sqlalchemy as sa
from alembic import op

revision = "audit_0002"
down_revision = "audit_0001"
branch_labels = None
depends_on = None

TABLE = "audit_messages"


def _set_primary_key(columns: list[str], *, site_required: bool) -> None:
    if op.get_bind().dialect.name == "sqlite":
        # SQLite cannot alter a primary key: batch mode rebuilds the table (rows, indexes).
        with op.batch_alter_table(TABLE, recreate="always") as batch:
            batch.alter_column("site_id", existing_type=sa.String(63), nullable=not site_required)
            batch.create_primary_key(f"{TABLE}_pkey", columns)
    else:
        op.drop_constraint(f"{TABLE}_pkey", TABLE, type_="primary")
        op.alter_column(TABLE, "site_id", existing_type=sa.String(63), nullable=not site_required)
        op.create_primary_key(f"{TABLE}_pkey", TABLE, columns)


def upgrade() -> None:
    op.execute(sa.text(f"DELETE FROM {TABLE} WHERE site_id IS NULL"))
    if op.get_bind().dialect.name == "sqlite":
        # The rebuilt table takes site_id into its (unnamed) key, as a fresh table has it.
        site = sa.Column("site_id", sa.String(63), primary_key=True, nullable=False)
        with op.batch_alter_table(TABLE, recreate="always", reflect_args=(site,)):
            pass
        return
    _set_primary_key(["message_id", "site_id"], site_required=True)


def downgrade() -> None:
    _set_primary_key(["message_id"], site_required=False)
