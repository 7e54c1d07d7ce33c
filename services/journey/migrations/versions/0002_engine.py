"""journey engine: journeys, versions, timers, snapshots; instances re-enter and keep their state

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

SCHEMA = "journey"
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "journeys",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("journey_id", sa.Text(), primary_key=True),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("draft", postgresql.JSONB(), nullable=False),
        sa.Column("published_version", sa.Integer()),
        sa.Column("playbook", sa.Text()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "journey_versions",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("journey_id", sa.Text(), primary_key=True),
        sa.Column("version", sa.Integer(), primary_key=True),
        sa.Column("definition", postgresql.JSONB(), nullable=False),
        sa.Column("published_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "timers",
        sa.Column("timer_id", sa.Text(), primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("journey_id", sa.Text(), nullable=False),
        sa.Column("customer_id", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.Text()),
        sa.Column("due_at", TS, nullable=False),
        sa.Column("paused", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        schema=SCHEMA,
    )
    op.create_index("ix_timers_due", "timers", ["due_at"], schema=SCHEMA, postgresql_where=sa.text("NOT paused"))
    op.create_index("ix_timers_customer", "timers", ["tenant_id", "customer_id"], schema=SCHEMA)
    op.create_index("ix_timers_journey", "timers", ["tenant_id", "journey_id"], schema=SCHEMA)
    op.create_table(
        "snapshots",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("user_id", sa.Text()),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("snapshot", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.drop_index("uq_instances_entry", table_name="instances", schema=SCHEMA)
    op.add_column("instances", sa.Column("user_id", sa.Text()), schema=SCHEMA)
    op.add_column(
        "instances", sa.Column("holdout", sa.Boolean(), nullable=False, server_default=sa.text("false")), schema=SCHEMA
    )
    op.add_column(
        "instances",
        sa.Column("context", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=SCHEMA,
    )
    op.add_column("instances", sa.Column("goal_at", TS), schema=SCHEMA)
    op.create_index(
        "ix_instances_journey_node", "instances", ["tenant_id", "journey_id", "current_node"], schema=SCHEMA
    )


def downgrade() -> None:
    op.drop_index("ix_instances_journey_node", table_name="instances", schema=SCHEMA)
    for column in ("goal_at", "context", "holdout", "user_id"):
        op.drop_column("instances", column, schema=SCHEMA)
    op.create_index(
        "uq_instances_entry", "instances", ["tenant_id", "journey_id", "customer_id"], unique=True, schema=SCHEMA
    )
    for table in ("snapshots", "timers", "journey_versions", "journeys"):
        op.drop_table(table, schema=SCHEMA)
