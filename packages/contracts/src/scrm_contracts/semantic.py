"""Semantic events on ``events.v1``: the track events and identify traits the platform understands.

Each known track event has a properties model; ingest rejects a known event whose properties do not fit, and
passes unknown (custom) events through unchanged. Every model allows extra properties (shops add their own).
"""

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from scrm_contracts.events import Amount, finite_amount


class SemanticEvent(StrEnum):
    ORDER_COMPLETED = "Order Completed"
    ORDER_REFUNDED = "Order Refunded"
    MEMBERSHIP_STARTED = "Membership Started"
    MEMBERSHIP_RENEWED = "Membership Renewed"
    MEMBERSHIP_CANCELLED = "Membership Cancelled"
    STORED_VALUE_TOPPED_UP = "Stored Value Topped Up"
    STORED_VALUE_SPENT = "Stored Value Spent"
    COUPON_REDEEMED = "Coupon Redeemed"
    WECOM_CONTACT_ADDED = "WeCom Contact Added"
    WECOM_CONTACT_REMOVED = "WeCom Contact Removed"
    WECOM_GROUP_JOINED = "WeCom Group Joined"
    WECOM_GROUP_LEFT = "WeCom Group Left"
    OFFICIAL_ACCOUNT_SUBSCRIBED = "Official Account Subscribed"
    OFFICIAL_ACCOUNT_UNSUBSCRIBED = "Official Account Unsubscribed"
    SUBSCRIBE_MESSAGE_AUTHORIZED = "Subscribe Message Authorized"
    SMS_UNSUBSCRIBED = "SMS Unsubscribed"
    EMAIL_UNSUBSCRIBED = "Email Unsubscribed"
    MESSAGE_DELIVERED = "Message Delivered"
    MESSAGE_OPENED = "Message Opened"
    MESSAGE_CLICKED = "Message Clicked"
    MESSAGE_REPLIED = "Message Replied"
    MESSAGE_FAILED = "Message Failed"
    TAGS_CHANGED = "Tags Changed"


Channel = Literal["wecom", "wechat_oa", "sms", "email", "webhook", "staff_task"]


class _Props(BaseModel):
    model_config = ConfigDict(extra="allow")


class Product(BaseModel):
    model_config = ConfigDict(extra="allow")

    product_id: str | None = None
    sku: str | None = None
    name: str | None = None
    price: Amount | None = None
    quantity: int | None = Field(default=None, ge=0)


class OrderCompletedProperties(BaseModel):
    """Segment e-commerce ``Order Completed``: ``order_id`` and ``total`` (or ``revenue``) are required."""

    model_config = ConfigDict(extra="allow")

    order_id: str = Field(min_length=1, max_length=200)
    total: Amount | None = None
    revenue: Amount | None = None
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    products: list[Product] = Field(default_factory=list)

    _check_total = field_validator("total", "revenue")(finite_amount)

    @model_validator(mode="after")
    def _needs_amount(self) -> "OrderCompletedProperties":
        if self.total is None and self.revenue is None:
            raise ValueError("total or revenue is required")
        return self

    @property
    def amount(self) -> Decimal:
        """What the order is worth: ``total``, else ``revenue``."""
        value = self.total if self.total is not None else self.revenue
        assert value is not None
        return value


class OrderRefundedProperties(BaseModel):
    """Segment e-commerce ``Order Refunded``: a full refund unless ``total`` names a partial amount."""

    model_config = ConfigDict(extra="allow")

    order_id: str = Field(min_length=1, max_length=200)
    total: Amount | None = None
    currency: str = Field(default="CNY", min_length=3, max_length=3)

    _check_total = field_validator("total")(finite_amount)


class MembershipStartedProperties(_Props):
    level: str = Field(min_length=1, max_length=100)
    membership_id: str | None = None
    started_at: datetime | None = None
    expires_at: datetime | None = None
    fee: Amount | None = None

    _check_fee = field_validator("fee")(finite_amount)


class MembershipRenewedProperties(_Props):
    expires_at: datetime
    level: str | None = None
    fee: Amount | None = None

    _check_fee = field_validator("fee")(finite_amount)


class MembershipCancelledProperties(_Props):
    reason: str | None = None


class StoredValueProperties(_Props):
    """``Stored Value Topped Up`` and ``Stored Value Spent``: the amount moved."""

    amount: Amount
    currency: str = Field(default="CNY", min_length=3, max_length=3)
    balance_after: Amount | None = None

    _check_amount = field_validator("amount", "balance_after")(finite_amount)


class CouponRedeemedProperties(_Props):
    coupon_id: str = Field(min_length=1, max_length=200)
    order_id: str | None = None
    touch_key: str | None = Field(default=None, description="The touch that issued the coupon, if known")


class WeComContactAddedProperties(_Props):
    staff_id: str = Field(min_length=1, max_length=200, description="WeCom userid of the staff member (导购)")
    external_userid: str = Field(min_length=1, max_length=200)
    store_id: str | None = None
    welcome_code: str | None = None
    state: str | None = Field(default=None, description="The channel code (渠道活码) the customer came through")


class WeComContactRemovedProperties(_Props):
    staff_id: str = Field(min_length=1, max_length=200)
    external_userid: str = Field(min_length=1, max_length=200)
    removed_by: Literal["customer", "staff"] = "customer"


class WeComGroupProperties(_Props):
    group_id: str = Field(min_length=1, max_length=200)
    external_userid: str | None = None


class OfficialAccountProperties(_Props):
    openid: str = Field(min_length=1, max_length=200)
    appid: str | None = None


class SubscribeMessageAuthorizedProperties(_Props):
    """The customer's answer to an official account subscribe message prompt (一次性订阅) for one WeChat template:
    ``accept`` grants one send of that template; ``reject`` (or ``ban``, the platform's block) withdraws them all."""

    openid: str = Field(min_length=1, max_length=200)
    template_id: str = Field(min_length=1, max_length=200, description="The WeChat subscribe template id")
    status: Literal["accept", "reject", "ban"]
    appid: str | None = None
    scene: str | None = Field(default=None, max_length=50, description="Where the prompt was shown (PopupScene)")


class SmsUnsubscribedProperties(_Props):
    phone: str | None = None
    keyword: str | None = Field(default=None, description="What the customer replied, e.g. TD")


class EmailUnsubscribedProperties(_Props):
    email: str | None = None


class MessageOutcomeProperties(_Props):
    """Delivery receipts and engagement on a message we sent."""

    channel: Channel
    touch_key: str | None = None
    provider_message_id: str | None = None
    url: str | None = None
    content: str | None = Field(default=None, max_length=2000)


class MessageFailedProperties(MessageOutcomeProperties):
    """A provider's receipt saying a message we sent did not reach the customer (bounce, rejected, undelivered)."""

    error_code: str | None = Field(default=None, max_length=200, description="The provider's status or error code")
    error_message: str | None = Field(default=None, max_length=2000)


class TagsChangedProperties(_Props):
    """Add or remove the customer's tags: posted by a shop, or published by a journey's tag node."""

    add: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)
    remove: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(default_factory=list, max_length=50)

    @model_validator(mode="after")
    def _changes_something(self) -> "TagsChangedProperties":
        if not self.add and not self.remove:
            raise ValueError("add or remove at least one tag")
        return self


TRACK_PROPERTIES: dict[str, type[BaseModel]] = {
    SemanticEvent.ORDER_COMPLETED: OrderCompletedProperties,
    SemanticEvent.ORDER_REFUNDED: OrderRefundedProperties,
    SemanticEvent.MEMBERSHIP_STARTED: MembershipStartedProperties,
    SemanticEvent.MEMBERSHIP_RENEWED: MembershipRenewedProperties,
    SemanticEvent.MEMBERSHIP_CANCELLED: MembershipCancelledProperties,
    SemanticEvent.STORED_VALUE_TOPPED_UP: StoredValueProperties,
    SemanticEvent.STORED_VALUE_SPENT: StoredValueProperties,
    SemanticEvent.COUPON_REDEEMED: CouponRedeemedProperties,
    SemanticEvent.WECOM_CONTACT_ADDED: WeComContactAddedProperties,
    SemanticEvent.WECOM_CONTACT_REMOVED: WeComContactRemovedProperties,
    SemanticEvent.WECOM_GROUP_JOINED: WeComGroupProperties,
    SemanticEvent.WECOM_GROUP_LEFT: WeComGroupProperties,
    SemanticEvent.OFFICIAL_ACCOUNT_SUBSCRIBED: OfficialAccountProperties,
    SemanticEvent.OFFICIAL_ACCOUNT_UNSUBSCRIBED: OfficialAccountProperties,
    SemanticEvent.SUBSCRIBE_MESSAGE_AUTHORIZED: SubscribeMessageAuthorizedProperties,
    SemanticEvent.SMS_UNSUBSCRIBED: SmsUnsubscribedProperties,
    SemanticEvent.EMAIL_UNSUBSCRIBED: EmailUnsubscribedProperties,
    SemanticEvent.MESSAGE_DELIVERED: MessageOutcomeProperties,
    SemanticEvent.MESSAGE_OPENED: MessageOutcomeProperties,
    SemanticEvent.MESSAGE_CLICKED: MessageOutcomeProperties,
    SemanticEvent.MESSAGE_REPLIED: MessageOutcomeProperties,
    SemanticEvent.MESSAGE_FAILED: MessageFailedProperties,
    SemanticEvent.TAGS_CHANGED: TagsChangedProperties,
}
"""Properties model of each known track event; an event not listed here is a custom event."""


ShortText = Annotated[str, Field(max_length=200)]


class IdentifyTraits(_Props):
    """Identify traits the platform understands (Segment reserved traits plus China's private-domain ids)."""

    name: ShortText | None = None
    phone: ShortText | None = None
    email: ShortText | None = None
    wecom_external_userid: ShortText | None = None
    wechat_unionid: ShortText | None = None
    wechat_openid: ShortText | None = None
    birthday: date | None = None
    gender: Literal["male", "female", "other", "unknown"] | None = None
    city: ShortText | None = None
    owner_staff_id: ShortText | None = Field(default=None, description="The staff member (导购) who owns the customer")
    store_id: ShortText | None = None
    membership_level: ShortText | None = None
    timezone: ShortText | None = Field(default=None, description="IANA name, e.g. Asia/Shanghai")
    sms_consent: bool | None = None
    email_consent: bool | None = None

    @field_validator("timezone")
    @classmethod
    def _known_timezone(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown IANA time zone {value!r}") from exc
        return value


def properties_model(event_name: str | None) -> type[BaseModel] | None:
    """The properties model of a known track event, or None for a custom event."""
    return TRACK_PROPERTIES.get(event_name or "")
