"""a tenant's own ingest rate limit (events per second), when it differs from the service default

Revision ID: 0002
Revises: 0001
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: Sequence[str] | None = None
depends_on: Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("tenants", sa.Column("events_per_second", sa.Integer(), nullable=True), schema="tenancy")


def downgrade() -> None:
    op.drop_column("tenants", "events_per_second", schema="tenancy")
