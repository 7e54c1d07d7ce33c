"""SendGrid's signed event webhook: the tenant's ECDSA verification key

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
    op.add_column("callback_configs", sa.Column("verification_key", sa.Text(), nullable=True), schema="ingest")


def downgrade() -> None:
    op.drop_column("callback_configs", "verification_key", schema="ingest")
