"""``profile.changes.v1``: enriched events and state changes the profile service publishes.

Every record is keyed by ``{tenant_id}:{customer_id}`` and carries ``type``. ``event_id`` is deterministic for a
given change, so a replayed source event produces the same change id and downstream consumers drop the duplicate.

Other services keep the customer state they need by replicating ``customer.updated`` snapshots (event-carried
state transfer); they never read the profile schema.
"""

from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scrm_contracts.base import Contract, UtcDatetime
from scrm_contracts.events import SCHEMA_VERSION

LifecycleStage = Literal["prospect", "new", "active", "silent", "sleeping", "churned"]
Consent = Literal["subscribed", "unsubscribed", "unknown"]


class _Change(Contract):
    event_id: str
    tenant_id: str
    customer_id: str
    user_id: str | None = None
    occurred_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class LifecycleStageChanged(_Change):
    type: Literal["customer.stage_changed"] = "customer.stage_changed"
    from_stage: LifecycleStage | None
    to_stage: LifecycleStage
    orders_count: int
    reason: Literal["order", "refund", "time", "merge"] = "order"


class OrderRecorded(_Change):
    type: Literal["order.recorded"] = "order.recorded"
    order_id: str
    amount: Decimal
    currency: str
    orders_count: int
    revenue_total: Decimal


class EventTracked(_Change):
    """Every track event of a known customer, passed on with the customer resolved (for journey triggers)."""

    type: Literal["event.tracked"] = "event.tracked"
    event: str
    source_event_id: str
    properties: dict[str, Any] = Field(default_factory=dict)


class Contact(BaseModel):
    """How the customer can be addressed on each channel (internal topic: values are whole)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    phone: str | None = None
    email: str | None = None
    wecom_external_userid: str | None = None
    wechat_openid: str | None = None
    wechat_unionid: str | None = None


class Reachability(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    wecom_staff_ids: list[str] = Field(default_factory=list, description="Staff members the customer is a friend of")
    official_account_follower: bool = False
    sms: Consent = "unknown"
    email: Consent = "unknown"


class CustomerSnapshot(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    lifecycle_stage: LifecycleStage = "prospect"
    tier: str | None = None
    owner_staff_id: str | None = None
    store_id: str | None = None
    timezone: str | None = None
    birthday: date | None = None
    membership_level: str | None = None
    membership_started_at: datetime | None = None
    membership_expires_at: datetime | None = None
    orders_count: int = 0
    revenue_total: Decimal = Decimal("0")
    first_order_at: datetime | None = None
    last_order_at: datetime | None = None
    stored_value_balance: Decimal = Decimal("0")
    clv: Decimal | None = None
    rfm_segment: str | None = None
    tags: list[str] = Field(default_factory=list)
    traits: dict[str, Any] = Field(default_factory=dict)
    contact: Contact = Field(default_factory=Contact)
    reachability: Reachability = Field(default_factory=Reachability)


class CustomerUpdated(_Change):
    """The customer's current state after any change; consumers replace what they hold."""

    type: Literal["customer.updated"] = "customer.updated"
    version: int = Field(description="Monotonic per customer: apply only if newer than what you hold")
    snapshot: CustomerSnapshot


class TierChanged(_Change):
    type: Literal["customer.tier_changed"] = "customer.tier_changed"
    from_tier: str | None
    to_tier: str | None


class SegmentEntered(_Change):
    type: Literal["segment.entered"] = "segment.entered"
    segment_id: str
    segment_name: str


class SegmentExited(_Change):
    type: Literal["segment.exited"] = "segment.exited"
    segment_id: str
    segment_name: str


class ClvUpdated(_Change):
    type: Literal["customer.clv_updated"] = "customer.clv_updated"
    expected_purchases: float
    probability_alive: float
    clv: Decimal
    horizon_days: int


class OwnerChanged(_Change):
    """The owning staff member changed (contact added, trait, or a departing staff member's handover 离职继承)."""

    type: Literal["customer.owner_changed"] = "customer.owner_changed"
    from_staff_id: str | None
    to_staff_id: str | None
    store_id: str | None = None
    reason: Literal["contact_added", "trait", "handover"] = "trait"


class CustomersMerged(_Change):
    """``customer_id`` is the survivor; ``merged_customer_ids`` no longer exist and now resolve to it."""

    type: Literal["customers.merged"] = "customers.merged"
    merged_customer_ids: list[str]


class CustomerErased(_Change):
    """PIPL erasure: every service removes this customer's personal data."""

    type: Literal["customer.erased"] = "customer.erased"


ProfileChange = (
    LifecycleStageChanged
    | OrderRecorded
    | EventTracked
    | CustomerUpdated
    | TierChanged
    | SegmentEntered
    | SegmentExited
    | ClvUpdated
    | OwnerChanged
    | CustomersMerged
    | CustomerErased
)
CustomerChange = Annotated[ProfileChange, Field(discriminator="type")]

CHANGE_TYPES: dict[str, type[_Change]] = {
    model.model_fields["type"].default: model
    for model in (
        LifecycleStageChanged,
        OrderRecorded,
        EventTracked,
        CustomerUpdated,
        TierChanged,
        SegmentEntered,
        SegmentExited,
        ClvUpdated,
        OwnerChanged,
        CustomersMerged,
        CustomerErased,
    )
}


def parse_profile_change(raw: bytes) -> ProfileChange | None:
    """Parse a ``profile.changes.v1`` record; ``None`` for a change type this consumer does not know yet."""
    import orjson

    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("record is not a JSON object")
    model = CHANGE_TYPES.get(data.get("type", ""))
    if model is None:
        return None
    return model.from_wire(data)  # type: ignore[return-value]
