"""The journey schema: one instance per customer per journey, and every transition it made."""

from datetime import datetime

from sqlalchemy import BigInteger, DateTime, Identity, Index, Integer, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scrm_kit.db import service_metadata
from scrm_kit.outbox import inbox_table, outbox_table

SCHEMA = "journey"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class InstanceRow(Base):
    __tablename__ = "instances"
    __table_args__ = (
        Index("uq_instances_entry", "tenant_id", "journey_id", "customer_id", unique=True),
        Index("ix_instances_customer", "tenant_id", "customer_id"),
    )

    instance_id: Mapped[str] = mapped_column(Text, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text)
    journey_id: Mapped[str] = mapped_column(Text)
    journey_version: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(Text)
    current_node: Mapped[str | None] = mapped_column(Text)
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


metadata = Base.metadata
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
