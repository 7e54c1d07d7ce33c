"""``touches.requests.v1`` and ``touches.results.v1``: what journey asks notify to send, and what came of it."""

from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from scrm_contracts.base import Contract, UtcDatetime
from scrm_contracts.events import SCHEMA_VERSION


class TouchStatus(StrEnum):
    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"


class TouchRequest(Contract):
    """Ask notify to reach one customer. ``touch_key`` is the idempotency key (instance, node, attempt)."""

    event_id: str
    touch_key: str = Field(min_length=1, max_length=300)
    tenant_id: str
    customer_id: str
    user_id: str | None = None
    journey_id: str | None = None
    journey_version: int | None = None
    instance_id: str | None = None
    node_id: str | None = None
    channels: list[str] = Field(min_length=1, description="Channel preference order, first reachable wins")
    template_id: str
    priority: Literal["marketing", "transactional"] = "marketing"
    variables: dict[str, Any] = Field(default_factory=dict)
    requested_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class TouchResult(Contract):
    """One outcome of a touch. A touch may have several results over time (sent, then delivered, then clicked)."""

    event_id: str
    touch_key: str
    tenant_id: str
    customer_id: str
    journey_id: str | None = None
    channel: str | None = None
    template_id: str | None = None
    status: TouchStatus
    reason: str | None = None
    provider_message_id: str | None = None
    occurred_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION
