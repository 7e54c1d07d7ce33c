"""WeCom mass messages read back in a second phase; WeCom quota holds; customers found by external userid

Revision ID: 0004_wecom
Revises: 0003_oa_subscribe
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_wecom"
down_revision: str | None = "0003_oa_subscribe"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SCHEMA = "notify"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "wecom_mass_checks",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("touch_key", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("msgid", sa.Text(), nullable=False),
        sa.Column("sender", sa.Text()),
        sa.Column("external_userid", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("give_up_at", TS, nullable=False),
        sa.Column("next_check_at", TS),
        sa.Column("checks", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text()),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_wecom_mass_checks_due",
        "wecom_mass_checks",
        ["next_check_at"],
        schema=SCHEMA,
        postgresql_where=sa.text("next_check_at IS NOT NULL"),
    )
    op.create_index("ix_wecom_mass_checks_customer", "wecom_mass_checks", ["tenant_id", "customer_id"], schema=SCHEMA)
    op.create_table(
        "wecom_quota_holds",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("hold_until", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        schema=SCHEMA,
    )
    # The welcome fast path finds the customer of a contact-added callback by their WeCom external userid.
    op.create_index(
        "ix_customers_wecom_external_userid",
        "customers",
        ["tenant_id", "wecom_external_userid"],
        schema=SCHEMA,
        postgresql_where=sa.text("wecom_external_userid IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("ix_customers_wecom_external_userid", "customers", schema=SCHEMA)
    op.drop_table("wecom_quota_holds", schema=SCHEMA)
    op.drop_index("ix_wecom_mass_checks_customer", "wecom_mass_checks", schema=SCHEMA)
    op.drop_index("ix_wecom_mass_checks_due", "wecom_mass_checks", schema=SCHEMA)
    op.drop_table("wecom_mass_checks", schema=SCHEMA)
