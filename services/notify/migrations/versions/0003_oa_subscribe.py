"""official account subscribe messages: templates gain kind and page; one-time consents (grants) per customer and
WeChat template, and the holds of touches claimed against them

Revision ID: 0003_oa_subscribe
Revises: 0002
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_oa_subscribe"
down_revision: str | None = "0002"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SCHEMA = "notify"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.add_column("templates", sa.Column("kind", sa.Text(), nullable=False, server_default="template"), schema=SCHEMA)
    op.add_column("templates", sa.Column("page", sa.Text()), schema=SCHEMA)
    op.create_table(
        "subscribe_grants",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("wechat_template_id", sa.Text(), primary_key=True),
        sa.Column("unspent", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("last_status", sa.Text(), nullable=False),
        sa.Column("answered_at", TS, nullable=False),
        sa.Column("cleared_at", TS),
        sa.Column("updated_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "subscribe_holds",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("touch_key", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("wechat_template_id", sa.Text(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_subscribe_holds_customer", "subscribe_holds", ["tenant_id", "customer_id", "wechat_template_id"],
        schema=SCHEMA,
    )


def downgrade() -> None:
    op.drop_table("subscribe_holds", schema=SCHEMA)
    op.drop_table("subscribe_grants", schema=SCHEMA)
    op.drop_column("templates", "page", schema=SCHEMA)
    op.drop_column("templates", "kind", schema=SCHEMA)
