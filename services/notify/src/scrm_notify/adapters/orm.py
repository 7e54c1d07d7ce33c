"""The notify schema: channel configuration, the customer directory, consents, policies, templates, every touch
with its status, and the staff task queue."""

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, DateTime, Index, Integer, Text, func, text
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
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
    settings: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TouchRow(Base):
    __tablename__ = "touches"
    __table_args__ = (
        Index("ix_touches_customer", "tenant_id", "customer_id", "requested_at"),
        Index("ix_touches_sent", "tenant_id", "customer_id", "sent_at"),
        Index("ix_touches_journey", "tenant_id", "journey_id", "requested_at"),
        Index("ix_touches_due", "due_at", postgresql_where=text("due_at IS NOT NULL")),
        Index("ix_touches_provider_message", "tenant_id", "provider_message_id"),
    )

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    touch_key: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    journey_id: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[str] = mapped_column(Text)
    priority: Mapped[str] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    reason_code: Mapped[str | None] = mapped_column(Text)
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    body: Mapped[str | None] = mapped_column(Text)
    provider_message_id: Mapped[str | None] = mapped_column(Text)
    request: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    requested_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class CustomerRow(Base):
    """The customer as notify needs them, replicated from ``customer.updated`` (newer versions only)."""

    __tablename__ = "customers"
    __table_args__ = (
        Index(
            "ix_customers_wecom_external_userid",
            "tenant_id",
            "wecom_external_userid",
            postgresql_where=text("wecom_external_userid IS NOT NULL"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    version: Mapped[int] = mapped_column(BigInteger)
    snapshot_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    lifecycle_stage: Mapped[str | None] = mapped_column(Text)
    tier: Mapped[str | None] = mapped_column(Text)
    owner_staff_id: Mapped[str | None] = mapped_column(Text)
    timezone: Mapped[str | None] = mapped_column(Text)
    locale: Mapped[str | None] = mapped_column(Text)
    phone: Mapped[str | None] = mapped_column(Text)
    email: Mapped[str | None] = mapped_column(Text)
    wecom_external_userid: Mapped[str | None] = mapped_column(Text)
    wechat_openid: Mapped[str | None] = mapped_column(Text)
    wecom_staff_ids: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    official_account_follower: Mapped[bool] = mapped_column(Boolean, default=False)
    sms_consent: Mapped[str] = mapped_column(Text, default="unknown")
    email_consent: Mapped[str] = mapped_column(Text, default="unknown")
    variables: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))


class ErasedCustomerRow(Base):
    """A tombstone (no personal data): touches for an erased customer are suppressed, late snapshots ignored."""

    __tablename__ = "erased_customers"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    erased_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class CustomerAliasRow(Base):
    """A merged customer id and the survivor it now resolves to."""

    __tablename__ = "customer_aliases"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    merged_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)


class ConsentRow(Base):
    """An explicit consent record: an unsubscribe event, an API call, a provider's blacklist answer."""

    __tablename__ = "consents"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    status: Mapped[str] = mapped_column(Text)
    source: Mapped[str] = mapped_column(Text)
    occurred_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class PolicyRow(Base):
    __tablename__ = "policies"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    policy: Mapped[dict[str, Any]] = mapped_column(JSONB)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class TemplateRow(Base):
    __tablename__ = "templates"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    template_id: Mapped[str] = mapped_column(Text, primary_key=True)
    channel: Mapped[str] = mapped_column(Text, primary_key=True)
    locale: Mapped[str] = mapped_column(Text, primary_key=True)
    body: Mapped[str] = mapped_column(Text)
    subject: Mapped[str | None] = mapped_column(Text)
    provider_template: Mapped[str | None] = mapped_column(Text)
    params: Mapped[dict[str, str]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    kind: Mapped[str] = mapped_column(Text, server_default="template")
    page: Mapped[str | None] = mapped_column(Text)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class SubscribeGrantRow(Base):
    """One-time subscribe consents (一次性订阅) a customer gave for one WeChat template, not yet spent."""

    __tablename__ = "subscribe_grants"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    wechat_template_id: Mapped[str] = mapped_column(Text, primary_key=True)
    unspent: Mapped[int] = mapped_column(Integer, server_default="0")
    last_status: Mapped[str] = mapped_column(Text)
    answered_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    cleared_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class SubscribeHoldRow(Base):
    """A grant set aside for a touch claimed to be sent as a subscribe message: spent when the send succeeds,
    released when the touch ends otherwise, kept across retries."""

    __tablename__ = "subscribe_holds"
    __table_args__ = (Index("ix_subscribe_holds_customer", "tenant_id", "customer_id", "wechat_template_id"),)

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    touch_key: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    wechat_template_id: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class StaffTaskRow(Base):
    __tablename__ = "staff_tasks"
    __table_args__ = (
        Index("ix_staff_tasks_staff", "tenant_id", "staff_id", "status"),
        Index("ix_staff_tasks_due", "due_at", postgresql_where=text("status IN ('open', 'claimed')")),
    )

    task_id: Mapped[str] = mapped_column(Text, primary_key=True)
    tenant_id: Mapped[str] = mapped_column(Text)
    touch_key: Mapped[str] = mapped_column(Text, unique=True)
    customer_id: Mapped[str] = mapped_column(Text)
    journey_id: Mapped[str | None] = mapped_column(Text)
    template_id: Mapped[str | None] = mapped_column(Text)
    staff_id: Mapped[str] = mapped_column(Text)
    title: Mapped[str] = mapped_column(Text)
    suggested_words: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(Text)
    claimed_by: Mapped[str | None] = mapped_column(Text)
    outcome: Mapped[str | None] = mapped_column(Text)
    note: Mapped[str | None] = mapped_column(Text)
    due_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class WeComMassCheckRow(Base):
    """A WeCom mass message (one recipient's touch) whose second phase is still to be read back."""

    __tablename__ = "wecom_mass_checks"
    __table_args__ = (
        Index("ix_wecom_mass_checks_due", "next_check_at", postgresql_where=text("next_check_at IS NOT NULL")),
        Index("ix_wecom_mass_checks_customer", "tenant_id", "customer_id"),
    )

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    touch_key: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text)
    msgid: Mapped[str] = mapped_column(Text)
    sender: Mapped[str | None] = mapped_column(Text)
    external_userid: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    give_up_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    next_check_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    checks: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)


class WeComQuotaHoldRow(Base):
    """WeCom answered status 3 (over the mass-message quota) for this customer: no WeCom marketing until then."""

    __tablename__ = "wecom_quota_holds"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    customer_id: Mapped[str] = mapped_column(Text, primary_key=True)
    hold_until: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    recorded_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


metadata = Base.metadata
outbox = outbox_table(metadata)
inbox = inbox_table(metadata)
