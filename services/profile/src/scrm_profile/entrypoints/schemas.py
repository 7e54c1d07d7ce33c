"""Response and request models of the profile API."""

from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, Field

from scrm_profile.adapters.orm import CustomerRow


class TouchOut(BaseModel):
    touch_key: str
    journey_id: str | None
    channel: str | None
    template_id: str | None
    status: str
    reason: str | None
    occurred_at: datetime


class Reach(BaseModel):
    wecom_staff_ids: list[str]
    official_account_follower: bool
    sms: str
    email: str


class Rfm(BaseModel):
    r: int | None
    f: int | None
    m: int | None
    segment: str | None


class Value(BaseModel):
    expected_purchases: float | None
    probability_alive: float | None
    clv: Decimal | None


class Membership(BaseModel):
    level: str | None
    started_at: datetime | None
    expires_at: datetime | None
    stored_value_balance: Decimal


class CustomerLinks(BaseModel):
    timeline: str


class CustomerSummaryOut(BaseModel):
    customer_id: str
    user_id: str | None
    lifecycle_stage: str
    tier: str | None
    orders_count: int
    revenue_total: Decimal
    last_order_at: datetime | None
    clv: Decimal | None
    rfm_segment: str | None
    owner_staff_id: str | None
    tags: list[str]

    @classmethod
    def of(cls, c: CustomerRow) -> "CustomerSummaryOut":
        return cls(
            customer_id=c.customer_id,
            user_id=c.user_id,
            lifecycle_stage=c.lifecycle_stage,
            tier=c.tier,
            orders_count=c.orders_count,
            revenue_total=c.revenue_total,
            last_order_at=c.last_order_at,
            clv=c.clv,
            rfm_segment=c.rfm_segment,
            owner_staff_id=c.owner_staff_id,
            tags=list(c.tags or []),
        )


class CustomerOut(BaseModel):
    customer_id: str
    user_id: str | None
    anonymous_id: str | None
    identities: dict[str, list[str]]
    lifecycle_stage: str
    next_stage_at: datetime | None
    tier: str | None
    orders_count: int
    revenue_total: Decimal
    average_order_value: Decimal | None
    first_order_at: datetime | None
    last_order_at: datetime | None
    avg_interval_days: float | None
    name: str | None
    birthday: date | None
    gender: str | None
    city: str | None
    timezone: str | None
    owner_staff_id: str | None
    store_id: str | None
    traits: dict[str, Any]
    tags: list[str]
    segments: list[str]
    membership: Membership
    reachability: Reach
    last_engagement_at: datetime | None
    rfm: Rfm
    value: Value
    created_at: datetime
    updated_at: datetime
    touches: list[TouchOut]
    links: CustomerLinks


class CustomerPage(BaseModel):
    items: list[CustomerSummaryOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page; null on the last page")


class TimelineEntry(BaseModel):
    kind: Literal["order", "event", "touch"]
    at: datetime
    order_id: str | None = None
    amount: Decimal | None = None
    refunded_amount: Decimal | None = None
    currency: str | None = None
    event: str | None = None
    properties: dict[str, Any] | None = None
    touch_key: str | None = None
    channel: str | None = None
    status: str | None = None
    reason: str | None = None


class TimelineOut(BaseModel):
    customer_id: str
    entries: list[TimelineEntry]


class TagsIn(BaseModel):
    add: list[str] = Field(default_factory=list, max_length=100)
    remove: list[str] = Field(default_factory=list, max_length=100)


class SegmentIn(BaseModel):
    name: str = Field(min_length=1, max_length=200)
    rule: dict[str, Any] = Field(description="A rule in the shared rule language (see README)")


class SegmentOut(BaseModel):
    segment_id: str
    name: str
    rule: dict[str, Any]
    time_dependent: bool
    members: int
    created_at: datetime
    updated_at: datetime


class CountOut(BaseModel):
    count: int


class HandoverIn(BaseModel):
    to_staff_id: str = Field(min_length=1, max_length=200)
    store_id: str | None = None


class HandoverOut(BaseModel):
    from_staff_id: str
    to_staff_id: str
    customers: int


class ErasedOut(BaseModel):
    customer_id: str
    erased: bool


class ValueRefreshOut(BaseModel):
    tenant_id: str
    customers_fitted: int
    bgnbd: dict[str, float] | None
    gamma_gamma: dict[str, float] | None
    rfm_changed: int
    tiers_changed: int
    seconds: float
