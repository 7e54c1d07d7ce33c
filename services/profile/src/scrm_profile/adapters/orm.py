"""The profile schema: customers and their identities, orders, events, touches, segments and tenant settings."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import BigInteger, Boolean, Date, DateTime, Float, Identity, Index, Integer, Numeric, Text, func
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scrm_kit.db import service_metadata
from scrm_kit.outbox import inbox_table, outbox_table

SCHEMA = "profile"
ZERO = Decimal("0")


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class CustomerRow(Base):
    __tablename__ = "customers"
    __table_args__ = (
        Index("ix_customers_next_stage", "next_stage_at", postgresql_where="next_stage_at IS NOT NULL"),
        Index("ix_customers_tenant_owner", "tenant_id", "owner_staff_id"),
    )

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    user_id: Mapped[str | None] = mapped_column(Text)
    anonymous_id: Mapped[str | None] = mapped_column(Text)
    lifecycle_stage: Mapped[str] = mapped_column(Text, default="prospect")
    next_stage_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    orders_count: Mapped[int] = mapped_column(Integer, default=0)
    revenue_total: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=ZERO)
    first_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    last_order_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    avg_interval_days: Mapped[float | None] = mapped_column(Float)
    # identity traits
    name: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    birthday: Mapped[date | None] = mapped_column(Date)
    gender: Mapped[str | None] = mapped_column(Text)
    city: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(Text)
    traits: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    # ownership and membership
    owner_staff_id: Mapped[str | None] = mapped_column(Text)
    store_id: Mapped[str | None] = mapped_column(Text)
    membership_level: Mapped[str | None] = mapped_column(Text)
    membership_started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    membership_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    stored_value_balance: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=ZERO)
    # reachability
    wecom_staff_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    official_account_follower: Mapped[bool] = mapped_column(Boolean, default=False)
    sms_consent: Mapped[str] = mapped_column(Text, default="unknown")
    email_consent: Mapped[str] = mapped_column(Text, default="unknown")
    last_engagement_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # value
    rfm_r: Mapped[int | None] = mapped_column(Integer)
    rfm_f: Mapped[int | None] = mapped_column(Integer)
    rfm_m: Mapped[int | None] = mapped_column(Integer)
    rfm_segment: Mapped[str | None] = mapped_column(Text)
    expected_purchases: Mapped[float | None] = mapped_column(Float)
    probability_alive: Mapped[float | None] = mapped_column(Float)
    clv: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    tier: Mapped[str | None] = mapped_column(Text)
    version: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class IdentityRow(Base):
    """One identifier (kind, value) that resolves to one customer of a tenant."""

    __tablename__ = "identities"
    __table_args__ = (Index("ix_identities_customer", "tenant_id", "customer_id"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    kind: Mapped[str] = mapped_column(Text, primary_key=True)
    value: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)


class OrderRow(Base):
    __tablename__ = "orders"
    __table_args__ = (Index("ix_orders_customer", "tenant_id", "customer_id", "occurred_at"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    order_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(18, 2), default=ZERO)
    currency: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    source_event_id: Mapped[str] = mapped_column(Text)


class RefundRow(Base):
    """A refund kept on its own, so one that arrives before its order is applied when the order comes."""

    __tablename__ = "refunds"
    __table_args__ = (Index("ix_refunds_order", "tenant_id", "order_id"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    order_id: Mapped[str] = mapped_column(Text)
    amount: Mapped[Decimal | None] = mapped_column(Numeric(18, 2))
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class EventRow(Base):
    """Track events of a customer, for the timeline and event-count segment rules."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_customer_event", "tenant_id", "customer_id", "event", "occurred_at"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    event_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    event: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    properties: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)


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


class SegmentRow(Base):
    __tablename__ = "segments"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    segment_id: Mapped[str] = mapped_column(Text, primary_key=True)
    name: Mapped[str] = mapped_column(Text)
    rule: Mapped[dict[str, Any]] = mapped_column(JSONB)
    time_dependent: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SegmentMemberRow(Base):
    __tablename__ = "segment_members"
    __table_args__ = (Index("ix_segment_members_customer", "tenant_id", "customer_id"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    segment_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    entered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class TenantSettingsRow(Base):
    __tablename__ = "tenant_settings"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, default=dict)
    clv_params: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class AuditRow(Base):
    """Who changed what in bulk: merges, staff handovers (离职继承), erasures."""

    __tablename__ = "audit"
    __table_args__ = (Index("ix_audit_tenant_at", "tenant_id", "at"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text)
    action: Mapped[str] = mapped_column(Text)
    detail: Mapped[dict[str, Any]] = mapped_column(JSONB)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


metadata = Base.metadata
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
