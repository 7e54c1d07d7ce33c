"""The journey schema: journeys and their published versions, instances, transitions, timers, snapshots."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Identity, Index, Integer, Table, Text, func, text
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scrm_kit.db import service_metadata
from scrm_kit.outbox import inbox_table, outbox_table

SCHEMA = "journey"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class JourneyRow(Base):
    """A tenant's journey: the draft being edited and which published version new entries use."""

    __tablename__ = "journeys"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    journey_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)  # draft, active, paused, archived
    draft: Mapped[dict[str, Any]] = mapped_column(JSONB)
    published_version: Mapped[int | None] = mapped_column(Integer)
    playbook: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class VersionRow(Base):
    __tablename__ = "journey_versions"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    journey_id: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True)
    definition: Mapped[dict[str, Any]] = mapped_column(JSONB)
    published_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class InstanceRow(Base):
    __tablename__ = "instances"
    __table_args__ = (
        Index("ix_instances_customer", "tenant_id", "customer_id"),
        Index("ix_instances_journey_node", "tenant_id", "journey_id", "current_node"),
    )

    instance_id: Mapped[str] = mapped_column(Text, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text)
    journey_id: Mapped[str] = mapped_column(Text)
    journey_version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(Text)
    user_id: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    current_node: Mapped[str | None] = mapped_column(Text)
    holdout: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    context: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    goal_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TransitionRow(Base):
    __tablename__ = "transitions"
    __table_args__ = (Index("ix_transitions_instance", "instance_id", "id"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    instance_id: Mapped[str] = mapped_column(Text)
    tenant_id: Mapped[str] = mapped_column(Text)
    node_id: Mapped[str] = mapped_column(Text)
    outcome: Mapped[str] = mapped_column(Text)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TimerRow(Base):
    """One pending wake-up: an instance's wait (``step``) or a date trigger's next entry (``entry``)."""

    __tablename__ = "timers"
    __table_args__ = (
        Index("ix_timers_due", "due_at", postgresql_where=text("NOT paused")),
        Index("ix_timers_customer", "tenant_id", "customer_id"),
        Index("ix_timers_journey", "tenant_id", "journey_id"),
    )

    timer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(Text)
    journey_id: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str] = mapped_column(Text)
    instance_id: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    paused: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))


class SnapshotRow(Base):
    """The customer as profile last published it (``customer.updated``), applied only when newer."""

    __tablename__ = "snapshots"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger)
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


metadata = Base.metadata
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
journeys: Table = JourneyRow.__table__  # type: ignore[assignment]
versions: Table = VersionRow.__table__  # type: ignore[assignment]
instances: Table = InstanceRow.__table__  # type: ignore[assignment]
transitions: Table = TransitionRow.__table__  # type: ignore[assignment]
timers: Table = TimerRow.__table__  # type: ignore[assignment]
snapshots: Table = SnapshotRow.__table__  # type: ignore[assignment]
