"""customer directory, consents, policies, templates, staff tasks; touches gain scheduling columns

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

SCHEMA = "notify"
TS = sa.DateTime(timezone=True)


def _touches() -> None:
    op.add_column("channel_configs", sa.Column("settings", postgresql.JSONB(), nullable=False,
                                               server_default=sa.text("'{}'::jsonb")), schema=SCHEMA)
    for column in (
        sa.Column("reason_code", sa.Text()),
        sa.Column("request", postgresql.JSONB()),
        sa.Column("due_at", TS),
        sa.Column("sent_at", TS),
    ):
        op.add_column("touches", column, schema=SCHEMA)
    op.create_index("ix_touches_sent", "touches", ["tenant_id", "customer_id", "sent_at"], schema=SCHEMA)
    op.create_index("ix_touches_journey", "touches", ["tenant_id", "journey_id", "requested_at"], schema=SCHEMA)
    op.create_index("ix_touches_due", "touches", ["due_at"], schema=SCHEMA, postgresql_where=sa.text("due_at IS NOT NULL"))
    op.create_index("ix_touches_provider_message", "touches", ["tenant_id", "provider_message_id"], schema=SCHEMA)


def _directory() -> None:
    op.create_table(
        "customers",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("snapshot_at", TS, nullable=False),
        *[sa.Column(name, sa.Text()) for name in ("lifecycle_stage", "tier", "owner_staff_id", "timezone", "locale",
                                                  "phone", "email", "wecom_external_userid", "wechat_openid")],
        sa.Column("wecom_staff_ids", postgresql.ARRAY(sa.Text()), nullable=False, server_default=sa.text("'{}'")),
        sa.Column("official_account_follower", sa.Boolean(), nullable=False),
        sa.Column("sms_consent", sa.Text(), nullable=False),
        sa.Column("email_consent", sa.Text(), nullable=False),
        sa.Column("variables", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        schema=SCHEMA,
    )
    op.create_table(
        "erased_customers",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("erased_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "customer_aliases",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("merged_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), nullable=False),
        schema=SCHEMA,
    )
    op.create_table(
        "consents",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("customer_id", sa.Text(), primary_key=True),
        sa.Column("channel", sa.Text(), primary_key=True),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        schema=SCHEMA,
    )


def _config() -> None:
    op.create_table(
        "policies",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("policy", postgresql.JSONB(), nullable=False),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "templates",
        sa.Column("tenant_id", sa.Text(), primary_key=True),
        sa.Column("template_id", sa.Text(), primary_key=True),
        sa.Column("channel", sa.Text(), primary_key=True),
        sa.Column("locale", sa.Text(), primary_key=True),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("subject", sa.Text()),
        sa.Column("provider_template", sa.Text()),
        sa.Column("params", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("updated_at", TS, nullable=False, server_default=sa.func.now()),
        schema=SCHEMA,
    )
    op.create_table(
        "staff_tasks",
        sa.Column("task_id", sa.Text(), primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("touch_key", sa.Text(), nullable=False, unique=True),
        *[sa.Column(name, sa.Text(), nullable=False) for name in ("customer_id", "staff_id", "title", "status")],
        *[sa.Column(name, sa.Text()) for name in ("journey_id", "template_id", "suggested_words", "claimed_by",
                                                  "outcome", "note")],
        sa.Column("due_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        schema=SCHEMA,
    )
    op.create_index("ix_staff_tasks_staff", "staff_tasks", ["tenant_id", "staff_id", "status"], schema=SCHEMA)
    op.create_index("ix_staff_tasks_due", "staff_tasks", ["due_at"], schema=SCHEMA,
                    postgresql_where=sa.text("status IN ('open', 'claimed')"))


def upgrade() -> None:
    _touches()
    _directory()
    _config()


def downgrade() -> None:
    for table in ("staff_tasks", "templates", "policies", "consents", "customer_aliases", "erased_customers",
                  "customers"):
        op.drop_table(table, schema=SCHEMA)
    for index in ("ix_touches_sent", "ix_touches_journey", "ix_touches_due", "ix_touches_provider_message"):
        op.drop_index(index, "touches", schema=SCHEMA)
    for column in ("reason_code", "request", "due_at", "sent_at"):
        op.drop_column("touches", column, schema=SCHEMA)
    op.drop_column("channel_configs", "settings", schema=SCHEMA)
