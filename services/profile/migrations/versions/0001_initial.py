"""customers, orders, touches, inbox and outbox

Revision ID: 0001
Revises:
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0001"
down_revision: str | None = None
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SCHEMA = "profile"


def upgrade() -> None:
    op.create_table(
        "outbox",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("topic", sa.Text(), nullable=False),
        sa.Column("key", sa.LargeBinary(), nullable=False),
        sa.Column("value", sa.LargeBinary(), nullable=False),
        sa.Column("headers", postgresql.JSONB(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "inbox",
        sa.Column("consumer", sa.Text(), primary_key=True),
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Text(), primary_key=True),
        sa.Column("processed_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "customers",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("user_id", sa.Text()),
        sa.Column("anonymous_id", sa.Text()),
        sa.Column("lifecycle_stage", sa.Text(), nullable=False),
        sa.Column("orders_count", sa.Integer(), nullable=False),
        sa.Column("revenue_total", sa.Numeric(18, 2), nullable=False),
        sa.Column("first_order_at", sa.DateTime(timezone=True)),
        sa.Column("last_order_at", sa.DateTime(timezone=True)),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("uq_customers_tenant_user", "customers", ["tenant_id", "user_id"], unique=True, schema=SCHEMA)
    op.create_index(
        "uq_customers_tenant_anonymous", "customers", ["tenant_id", "anonymous_id"], unique=True, schema=SCHEMA
    )
    op.create_table(
        "orders",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("order_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(18, 2), nullable=False),
        sa.Column("refunded_amount", sa.Numeric(18, 2), nullable=False),
        sa.Column("currency", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("source_event_id", sa.Text(), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_orders_customer", "orders", ["tenant_id", "customer_id", "occurred_at"], schema=SCHEMA)
    op.create_table(
        "touches",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Text(), primary_key=True),
        sa.Column("touch_key", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("journey_id", sa.Text()),
        sa.Column("channel", sa.Text()),
        sa.Column("template_id", sa.Text()),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_touches_customer", "touches", ["tenant_id", "customer_id", "occurred_at"], schema=SCHEMA)


def downgrade() -> None:
    for table in ("touches", "orders", "customers", "inbox", "outbox"):
        op.drop_table(table, schema=SCHEMA)
