"""identities, value and reachability columns, refunds, events, segments, tenant settings, audit

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None

SCHEMA = "profile"
TEXT_ARRAY = postgresql.ARRAY(sa.Text())

NEW_CUSTOMER_COLUMNS = [
    sa.Column("next_stage_at", sa.DateTime(timezone=True)),
    sa.Column("avg_interval_days", sa.Float()),
    sa.Column("name", sa.Text()),
    sa.Column("phone", sa.Text()),
    sa.Column("email", sa.Text()),
    sa.Column("birthday", sa.Date()),
    sa.Column("gender", sa.Text()),
    sa.Column("city", sa.Text()),
    sa.Column("timezone", sa.Text()),
    sa.Column("traits", postgresql.JSONB(), nullable=False, server_default="{}"),
    sa.Column("tags", TEXT_ARRAY, nullable=False, server_default="{}"),
    sa.Column("owner_staff_id", sa.Text()),
    sa.Column("store_id", sa.Text()),
    sa.Column("membership_level", sa.Text()),
    sa.Column("membership_started_at", sa.DateTime(timezone=True)),
    sa.Column("membership_expires_at", sa.DateTime(timezone=True)),
    sa.Column("stored_value_balance", sa.Numeric(18, 2), nullable=False, server_default="0"),
    sa.Column("wecom_staff_ids", TEXT_ARRAY, nullable=False, server_default="{}"),
    sa.Column("official_account_follower", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("sms_consent", sa.Text(), nullable=False, server_default="unknown"),
    sa.Column("email_consent", sa.Text(), nullable=False, server_default="unknown"),
    sa.Column("last_engagement_at", sa.DateTime(timezone=True)),
    sa.Column("rfm_r", sa.Integer()),
    sa.Column("rfm_f", sa.Integer()),
    sa.Column("rfm_m", sa.Integer()),
    sa.Column("rfm_segment", sa.Text()),
    sa.Column("expected_purchases", sa.Float()),
    sa.Column("probability_alive", sa.Float()),
    sa.Column("clv", sa.Numeric(18, 2)),
    sa.Column("tier", sa.Text()),
    sa.Column("version", sa.BigInteger(), nullable=False, server_default="0"),
]


def upgrade() -> None:
    for column in NEW_CUSTOMER_COLUMNS:
        op.add_column("customers", column, schema=SCHEMA)
    op.drop_index("uq_customers_tenant_user", "customers", schema=SCHEMA)
    op.drop_index("uq_customers_tenant_anonymous", "customers", schema=SCHEMA)
    op.create_index(
        "ix_customers_next_stage", "customers", ["next_stage_at"], schema=SCHEMA,
        postgresql_where=sa.text("next_stage_at IS NOT NULL"),
    )
    op.create_index("ix_customers_tenant_owner", "customers", ["tenant_id", "owner_staff_id"], schema=SCHEMA)
    op.create_table(
        "identities",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("kind", sa.Text(), primary_key=True),
        sa.Column("value", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_identities_customer", "identities", ["tenant_id", "customer_id"], schema=SCHEMA)
    op.execute(
        f"INSERT INTO {SCHEMA}.identities (tenant_id, kind, value, customer_id) "
        f"SELECT tenant_id, 'user_id', user_id, customer_id FROM {SCHEMA}.customers WHERE user_id IS NOT NULL "
        f"UNION ALL SELECT tenant_id, 'anonymous_id', anonymous_id, customer_id FROM {SCHEMA}.customers "
        "WHERE anonymous_id IS NOT NULL ON CONFLICT DO NOTHING"
    )
    op.create_table(
        "refunds",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Text(), primary_key=True),
        sa.Column("order_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.Numeric(18, 2)),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_refunds_order", "refunds", ["tenant_id", "order_id"], schema=SCHEMA)
    op.create_table(
        "events",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("event_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("event", sa.Text(), nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("properties", postgresql.JSONB(), nullable=False, server_default="{}"),
        schema=SCHEMA,
    )
    op.create_index(
        "ix_events_customer_event", "events", ["tenant_id", "customer_id", "event", "occurred_at"], schema=SCHEMA
    )
    op.create_table(
        "segments",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("segment_id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("rule", postgresql.JSONB(), nullable=False),
        sa.Column("time_dependent", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "segment_members",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("segment_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("entered_at", sa.DateTime(timezone=True), nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_segment_members_customer", "segment_members", ["tenant_id", "customer_id"], schema=SCHEMA)
    op.create_table(
        "tenant_settings",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("settings", postgresql.JSONB(), nullable=False, server_default="{}"),
        sa.Column("clv_params", postgresql.JSONB()),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "audit",
        sa.Column("id", sa.BigInteger(), sa.Identity(), primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("detail", postgresql.JSONB(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_index("ix_audit_tenant_at", "audit", ["tenant_id", "at"], schema=SCHEMA)


def downgrade() -> None:
    for table in ("audit", "tenant_settings", "segment_members", "segments", "events", "refunds", "identities"):
        op.drop_table(table, schema=SCHEMA)
    op.drop_index("ix_customers_tenant_owner", "customers", schema=SCHEMA)
    op.drop_index("ix_customers_next_stage", "customers", schema=SCHEMA)
    for column in reversed(NEW_CUSTOMER_COLUMNS):
        op.drop_column("customers", column.name, schema=SCHEMA)
    op.create_index("uq_customers_tenant_user", "customers", ["tenant_id", "user_id"], unique=True, schema=SCHEMA)
    op.create_index(
        "uq_customers_tenant_anonymous", "customers", ["tenant_id", "anonymous_id"], unique=True, schema=SCHEMA
    )
