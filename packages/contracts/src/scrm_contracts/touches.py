"""``touches.requests.v1`` and ``touches.results.v1``: what journey asks notify to send, and what came of it."""

from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scrm_contracts.base import Contract, UtcDatetime
from scrm_contracts.events import SCHEMA_VERSION


class TouchStatus(StrEnum):
    """Outcomes of a touch. ``completed``/``expired`` are for staff tasks (``outcome`` says what happened)."""

    SUPPRESSED = "suppressed"
    DEFERRED = "deferred"
    SENT = "sent"
    DELIVERED = "delivered"
    FAILED = "failed"
    OPENED = "opened"
    CLICKED = "clicked"
    REPLIED = "replied"
    COMPLETED = "completed"
    EXPIRED = "expired"


class StaffTaskSpec(BaseModel):
    """A task for a real person (导购) instead of an automatic message: "tools plus people"."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    staff_id: str | None = Field(default=None, description="Defaults to the customer's owning staff member")
    title: str = Field(min_length=1, max_length=200)
    suggested_words: str | None = Field(default=None, max_length=2000)
    due_at: UtcDatetime | None = None


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
    task: StaffTaskSpec | None = Field(default=None, description="Set when the channel is staff_task")
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
    outcome: str | None = Field(default=None, description="What the staff member recorded on a completed task")
    occurred_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION
