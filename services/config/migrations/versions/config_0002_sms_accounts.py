"""Config read model: each site's SMS provider account, to refuse sharing one across groups.

Revision ID: config_0002
Revises: config_0001
"""

import sqlalchemy as sa
from alembic import op

revision = "config_0002"
down_revision = "config_0001"
branch_labels = None
depends_on = None

_sites = sa.table(
    "config_sites",
    sa.column("site_id", sa.String),
    sa.column("settings", sa.JSON),
    sa.column("sms_provider", sa.String),
    sa.column("sms_account_id", sa.String),
)


def _account(settings: object) -> tuple[str | None, str | None]:
    # Frozen copy of `read_model.sms_account`: a migration must not change when the code does.
    sms = settings.get("sms") if isinstance(settings, dict) else None
    provider = sms.get("provider") if isinstance(sms, dict) else None
    if not isinstance(provider, dict):
        return None, None
    kind, account_id = provider.get("kind"), provider.get("account_id")
    if not isinstance(kind, str) or kind == "none" or not isinstance(account_id, str):
        return None, None
    return kind, account_id


def upgrade() -> None:
    op.add_column("config_sites", sa.Column("sms_provider", sa.String(16), nullable=True))
    op.add_column("config_sites", sa.Column("sms_account_id", sa.String(100), nullable=True))
    op.create_index(
        "ix_config_sites_sms_account", "config_sites", ["sms_provider", "sms_account_id"]
    )
    bind = op.get_bind()
    for row in bind.execute(sa.select(_sites.c.site_id, _sites.c.settings)).all():
        kind, account_id = _account(row.settings)
        if kind is not None:
            bind.execute(
                _sites.update()
                .where(_sites.c.site_id == row.site_id)
                .values(sms_provider=kind, sms_account_id=account_id)
            )


def downgrade() -> None:
    op.drop_index("ix_config_sites_sms_account", "config_sites")
    op.drop_column("config_sites", "sms_account_id")
    op.drop_column("config_sites", "sms_provider")
