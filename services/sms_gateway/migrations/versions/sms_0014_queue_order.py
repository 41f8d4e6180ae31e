"""SMS gateway: an index that reads the queue in claim order.

Revision ID: sms_0014
Revises: sms_0013

An immediate-mode account's tick claims the oldest messages of all the account's sites (250 in
the load test). Through the per-site index every claim read and sorted all their queued
messages, a cost growing with the queue; this index (state, accepted_at, intake_seq,
message_id, site_id) yields them in claim order, so a claim stops after a few hundred rows.
"""

from alembic import op

revision = "sms_0014"
down_revision = "sms_0013"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index(
        "ix_sms_messages_queue_order",
        "sms_messages",
        ["state", "accepted_at", "intake_seq", "message_id", "site_id"],
    )


def downgrade() -> None:
    op.drop_index("ix_sms_messages_queue_order", table_name="sms_messages")
