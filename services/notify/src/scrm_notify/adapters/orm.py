"""The notify schema: channel configuration per tenant and every touch with its status."""

from datetime import datetime

from sqlalchemy import DateTime, Index, Integer, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scrm_kit.db import service_metadata
from scrm_kit.outbox import inbox_table, outbox_table

SCHEMA = "notify"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class ChannelConfigRow(Base):
    __tablename__ = "channel_configs"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    url: Mapped[str] = mapped_column(Text)
    secret: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TouchRow(Base):
    __tablename__ = "touches"
    __table_args__ = (Index("ix_touches_customer", "tenant_id", "customer_id", "requested_at"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    touch_key: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    journey_id: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


metadata = Base.metadata
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
