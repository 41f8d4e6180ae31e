"""Staff accounts: users, invitations, console sessions, sign-in failures, token last use.

Revision ID: config_0003
Revises: config_0002
"""

import sqlalchemy as sa
from alembic import op

revision = "config_0003"
down_revision = "config_0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "staff_users",
        sa.Column("user_id", sa.String(32), primary_key=True),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("email", sa.String(320), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("sites", sa.JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(200), nullable=True),
        sa.Column("totp_secret", sa.Text, nullable=True),
        sa.Column("totp_pending", sa.Text, nullable=True),
        sa.Column("totp_last_step", sa.BigInteger, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("email", name="uq_staff_users_email"),
    )
    op.create_index("ix_staff_users_group_id", "staff_users", ["group_id"])
    op.create_table(
        "staff_invitations",
        sa.Column("token_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_staff_invitations_user_id", "staff_invitations", ["user_id"])
    op.create_table(
        "staff_sessions",
        sa.Column("session_hash", sa.String(64), primary_key=True),
        sa.Column("user_id", sa.String(32), nullable=False),
        sa.Column("group_id", sa.String(63), nullable=False),
        sa.Column("method", sa.String(16), nullable=False),
        sa.Column("client", sa.String(64), nullable=True),
        sa.Column("api_token_id", sa.String(32), nullable=False),
        sa.Column("api_token", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_staff_sessions_user_id", "staff_sessions", ["user_id"])
    op.create_table(
        "staff_sign_in_failures",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("key", sa.String(320), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index(
        "ix_staff_sign_in_failures_key", "staff_sign_in_failures", ["scope", "key", "at"]
    )
    op.create_table(
        "api_token_usage",
        sa.Column("token_id", sa.String(32), primary_key=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("api_token_usage")
    op.drop_index("ix_staff_sign_in_failures_key", "staff_sign_in_failures")
    op.drop_table("staff_sign_in_failures")
    op.drop_index("ix_staff_sessions_user_id", "staff_sessions")
    op.drop_table("staff_sessions")
    op.drop_index("ix_staff_invitations_user_id", "staff_invitations")
    op.drop_table("staff_invitations")
    op.drop_index("ix_staff_users_group_id", "staff_users")
    op.drop_table("staff_users")
