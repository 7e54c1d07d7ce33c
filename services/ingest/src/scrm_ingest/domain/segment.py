"""The Segment HTTP Tracking API payload, and the rules that turn one message into a ``TrackedEvent``.

Field names follow Segment (camelCase on the wire). ``occurred_at`` is the sender's ``timestamp`` corrected for
clock skew as RudderStack does: ``received_at - (sentAt - timestamp)`` when ``sentAt`` is given.
"""

import uuid
from datetime import datetime, timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from scrm_contracts import IdentifyTraits, TrackedEvent, properties_model
from scrm_contracts.base import UtcDatetime
from scrm_kit.textcheck import REASON as NUL_REASON
from scrm_kit.textcheck import nul_path

MessageType = Literal["track", "identify", "page", "screen", "group", "alias"]
MAX_FUTURE = timedelta(hours=24)


class MessageError(Exception):
    """One message is invalid: says which field and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class SegmentMessage(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    type: MessageType | None = None
    message_id: str | None = Field(default=None, alias="messageId", min_length=1, max_length=200)
    user_id: str | None = Field(default=None, alias="userId", max_length=200)
    anonymous_id: str | None = Field(default=None, alias="anonymousId", max_length=200)
    event: str | None = Field(default=None, max_length=200)
    timestamp: UtcDatetime | None = None
    sent_at: UtcDatetime | None = Field(default=None, alias="sentAt")
    properties: dict[str, Any] = Field(default_factory=dict)
    traits: dict[str, Any] = Field(default_factory=dict)
    context: dict[str, Any] = Field(default_factory=dict)
    integrations: dict[str, Any] = Field(default_factory=dict)


def _field_of(error: ValidationError) -> tuple[str, str]:
    first = error.errors()[0]
    return ".".join(str(p) for p in first["loc"]) or "body", first["msg"]


def _check_part(model: type[BaseModel], value: dict[str, Any], part: str) -> None:
    try:
        model.model_validate(value)
    except ValidationError as exc:
        field, reason = _field_of(exc)
        raise MessageError(f"{part}.{field}" if field != "body" else part, reason) from exc


def to_event(
    raw: Any, *, tenant_id: str, kind: MessageType | None, received_at: datetime, nul_free: bool = False
) -> TrackedEvent:
    """Validate one Segment message and build the event to publish; raises ``MessageError``. ``nul_free``: the
    caller saw no escaped NUL in the raw JSON, so the message's strings need no search for one."""
    if not isinstance(raw, dict):
        raise MessageError("body", "each message must be a JSON object")
    if not nul_free and (where := nul_path(raw)) is not None:
        raise MessageError(where, NUL_REASON)
    try:
        message = SegmentMessage.model_validate(raw)
    except ValidationError as exc:
        raise MessageError(*_field_of(exc)) from exc
    message_type = kind or message.type
    if message_type is None:
        raise MessageError("type", "a batch item needs a type (track, identify, page, screen, group, alias)")
    if not message.user_id and not message.anonymous_id:
        raise MessageError("userId", "userId or anonymousId is required")
    if message_type == "track" and not message.event:
        raise MessageError("event", "a track call needs an event name")
    occurred_at = message.timestamp or received_at
    if message.timestamp and message.sent_at:
        try:
            occurred_at = received_at - (message.sent_at - message.timestamp)
        except OverflowError as exc:
            raise MessageError("sentAt", "sentAt and timestamp are too far apart to correct the clock") from exc
    if occurred_at - received_at > MAX_FUTURE:
        raise MessageError("timestamp", "more than 24 hours in the future")
    semantic = properties_model(message.event) if message_type == "track" else None
    if semantic is not None:
        _check_part(semantic, message.properties, "properties")
    if message_type == "identify":
        _check_part(IdentifyTraits, message.traits, "traits")
    return TrackedEvent(
        event_id=message.message_id or f"gen-{uuid.uuid4()}",
        tenant_id=tenant_id,
        type=message_type,
        event=message.event if message_type == "track" else None,
        user_id=message.user_id,
        anonymous_id=message.anonymous_id,
        occurred_at=occurred_at,
        received_at=received_at,
        properties=message.properties,
        traits=message.traits,
        context=message.context,
    )
