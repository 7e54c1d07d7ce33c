"""``events.v1``: what shops and channel callbacks told us, one record per event, as ingest accepted it.

The envelope follows the Segment spec (``type`` is track/identify/page/screen/group/alias; a track call names its
``event``). Semantic events (purchases, membership, channel events) have a properties model each, validated by
ingest before publishing and again by consumers that act on them.
"""

from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from scrm_contracts.base import Contract, UtcDatetime

SCHEMA_VERSION = 1
MAX_AMOUNT = Decimal("1e9")


def record_key(tenant_id: str, customer_key: str) -> bytes:
    """Kafka record key: all records of one customer land on one partition, in order."""
    return f"{tenant_id}:{customer_key}".encode()


class TrackedEvent(Contract):
    """One accepted event on ``events.v1``."""

    event_id: str = Field(min_length=1, max_length=200, description="messageId from the sender; the dedup key")
    tenant_id: str
    type: Literal["track", "identify", "page", "screen", "group", "alias"]
    event: str | None = Field(default=None, description="Track event name, e.g. 'Order Completed'")
    user_id: str | None = None
    anonymous_id: str | None = None
    customer_id: str | None = Field(
        default=None, description="Our customer id, set only by the platform's own producers (e.g. journey)"
    )
    occurred_at: UtcDatetime
    received_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _has_identity(self) -> "TrackedEvent":
        if not self.user_id and not self.anonymous_id and not self.customer_id:
            raise ValueError("userId or anonymousId is required")
        return self

    @property
    def customer_key(self) -> str:
        """The identifier the record is keyed by: the shop's user id, else the anonymous id."""
        if self.user_id:
            return self.user_id
        return f"anon:{self.anonymous_id}" if self.anonymous_id else f"cus:{self.customer_id}"


def finite_amount(value: Decimal | None) -> Decimal | None:
    """Validator for money: finite, not negative, at most 1e9."""
    if value is None:
        return None
    if not value.is_finite():
        raise ValueError("must be a finite number")
    if value < 0:
        raise ValueError("must not be negative")
    if value > MAX_AMOUNT:
        raise ValueError(f"must not exceed {MAX_AMOUNT:,.0f}")
    return value


Amount = Annotated[Decimal, Field(allow_inf_nan=False)]
