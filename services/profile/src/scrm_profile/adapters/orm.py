"""The profile schema: customers, their orders and the touches they received."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import DateTime, Index, Integer, Numeric, Text, func
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scrm_kit.db import service_metadata
from scrm_kit.outbox import inbox_table, outbox_table

SCHEMA = "profile"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class CustomerRow(Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index("uq_customers_tenant_user", "tenant_id", "user_id", unique=True),
        Index("uq_customers_tenant_anonymous", "tenant_id", "anonymous_id", unique=True),
    )

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text)
    anonymous_id: Mapped[str | None] = mapped_column(Text)
    lifecycle_stage: Mapped[str] = mapped_column(Text, default="prospect")
    orders_count: Mapped[int] = mapped_column(Integer, default=0)
    revenue_total: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal("0"))
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer", "tenant_id", "customer_id", "occurred_at"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=Decimal("0"))
    currency: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_event_id: Mapped[str] = mapped_column(Text)


class TouchRow(Base):
    """One touch outcome on the customer's timeline (a touch may have several: sent, delivered, clicked)."""

    __tablename__ = "touches"
    __table_args__ = (Index("ix_touches_customer", "tenant_id", "customer_id", "occurred_at"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    touch_key: Mapped[str] = mapped_column(Text)
    customer_id: Mapped[str] = mapped_column(Text)
    journey_id: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


metadata = Base.metadata
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
