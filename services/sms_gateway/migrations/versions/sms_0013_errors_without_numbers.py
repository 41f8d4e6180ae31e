"""SMS gateway: ledger rows stored before sealing lose the number from their `last_error`.

Revision ID: sms_0013
Revises: sms_0012

A provider's refusal can name the number ("The 'To' number +614… is not valid"); the gateway
now writes `<recipient>` in its place, and this does the same for rows stored before, in SQL
alone. The rest of such a row (its payload and its `recipient` column) is sealed under the
recipient's keys by the gateway at start or by `stagger privacy seal-stored`: sealing needs the
key bucket on NATS and the service key, which a migration does not have (docs/privacy.md, "Data
written before this change"). A row still filed by an address is one not sealed yet.
"""

import sqlalchemy as sa
from alembic import op

revision = "sms_0013"
down_revision = "sms_0012"
branch_labels = None
depends_on = None

CLEAR = "(recipient LIKE '+%' OR recipient LIKE '%@%')"


def upgrade() -> None:
    bind = op.get_bind()
    sqlite = bind.dialect.name == "sqlite"
    if sqlite:
        # Overwrite the old text in the file rather than leave it in freed space.
        op.execute("PRAGMA secure_delete=ON")
    op.execute(
        sa.text(
            "UPDATE sms_messages SET last_error = REPLACE(last_error, recipient, '<recipient>') "
            f"WHERE last_error IS NOT NULL AND {CLEAR}"
        )
    )
    if sqlite:
        op.execute("PRAGMA secure_delete=OFF")


def downgrade() -> None:
    """The numbers are gone for good: nothing to undo."""
