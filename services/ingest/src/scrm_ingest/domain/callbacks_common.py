"""What every provider callback turns into: semantic track events on ``events.v1`` keyed by a channel identity.

A callback names a customer only by a channel identifier (phone, e-mail, WeCom external_userid, WeChat openid).
The event carries a stable ``anonymous_id`` derived from it (``sms:<hash>``, ``email:<hash>``, ``wecom:<id>``,
``oa:<openid>``) and the identifier itself in ``context.traits``, so the profile service's identity resolution links
it to the customer who already has that phone or e-mail. ``event_id`` is derived from the provider's own ids, so
a provider retrying the same callback produces the same event and is deduplicated downstream.
"""

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import phonenumbers
from pydantic import ValidationError

from scrm_contracts import TrackedEvent
from scrm_contracts.semantic import TRACK_PROPERTIES, SemanticEvent

CHINA_TIME = ZoneInfo("Asia/Shanghai")


class ItemError(Exception):
    """One callback item cannot become an event: names the field and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, slots=True)
class ChannelIdentity:
    """Who a callback is about: a stable anonymous id plus the traits profile matches on."""

    anonymous_id: str
    traits: dict[str, str]


@dataclass(frozen=True, slots=True)
class CallbackContext:
    """What a provider mapping needs besides the payload."""

    tenant_id: str
    provider: str
    received_at: datetime
    unsubscribe_keywords: frozenset[str] = frozenset()
    default_region: str = "CN"


@dataclass(slots=True)
class MappedCallback:
    """The events one callback produced, the items it could not use, and how many it ignored on purpose."""

    events: list[TrackedEvent] = field(default_factory=list)
    errors: list[ItemError] = field(default_factory=list)
    ignored: int = 0


def short_hash(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:32]


def _text(value: Any, field_name: str, *, required: bool = True) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise ItemError(field_name, "is required")
        return None
    if not isinstance(value, str | int):
        raise ItemError(field_name, "must be a string")
    return str(value).strip()


def required_text(value: Any, field_name: str) -> str:
    text = _text(value, field_name)
    assert text is not None
    return text


def optional_text(value: Any, field_name: str) -> str | None:
    return _text(value, field_name, required=False)


def phone_identity(raw: Any, field_name: str, region: str = "CN", country_code: Any = None) -> ChannelIdentity:
    """``sms:<hash of the E.164 number>``; the number goes into traits.phone for identity resolution."""
    number = required_text(raw, field_name)
    code = optional_text(country_code, "nationcode")
    if code and not number.startswith("+"):
        number = f"+{code.lstrip('+')}{number}"
    try:
        parsed = phonenumbers.parse(number, region)
    except phonenumbers.NumberParseException as exc:
        raise ItemError(field_name, "is not a phone number") from exc
    if not phonenumbers.is_possible_number(parsed):
        raise ItemError(field_name, "is not a phone number")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    return ChannelIdentity(anonymous_id=f"sms:{short_hash(e164)}", traits={"phone": e164})


def email_identity(raw: Any, field_name: str) -> ChannelIdentity:
    """``email:<hash of the lower-cased address>``; the address goes into traits.email."""
    email = required_text(raw, field_name).lower()
    local, at, domain = email.partition("@")
    if not at or not local or "." not in domain or " " in email:
        raise ItemError(field_name, "is not an e-mail address")
    return ChannelIdentity(anonymous_id=f"email:{short_hash(email)}", traits={"email": email})


def wecom_identity(raw: Any, field_name: str) -> ChannelIdentity:
    external_userid = required_text(raw, field_name)
    return ChannelIdentity(f"wecom:{external_userid}", {"wecom_external_userid": external_userid})


def openid_identity(raw: Any, field_name: str) -> ChannelIdentity:
    openid = required_text(raw, field_name)
    return ChannelIdentity(f"oa:{openid}", {"wechat_openid": openid})


def provider_time(raw: Any, field_name: str, fallback: datetime) -> datetime:
    """A provider timestamp: ``YYYY-MM-DD HH:MM:SS`` in Beijing time, unix seconds, or ISO 8601; else ``fallback``."""
    if raw is None or raw == "":
        return fallback
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str):
        text = raw.strip()
        if text.isdigit():
            return datetime.fromtimestamp(int(text), UTC)
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError as exc:
            raise ItemError(field_name, "is not a time (expected 'YYYY-MM-DD HH:MM:SS')") from exc
        return (parsed if parsed.tzinfo else parsed.replace(tzinfo=CHINA_TIME)).astimezone(UTC)
    raise ItemError(field_name, "is not a time (expected 'YYYY-MM-DD HH:MM:SS')")


def channel_event(
    ctx: CallbackContext,
    *,
    name: SemanticEvent,
    event_id: str,
    identity: ChannelIdentity,
    properties: dict[str, Any],
    occurred_at: datetime | None = None,
    user_id: str | None = None,
) -> TrackedEvent:
    """A track event with the semantic event's properties validated; raises ``ItemError`` naming the property."""
    model = TRACK_PROPERTIES[name]
    try:
        validated = model.model_validate({k: v for k, v in properties.items() if v is not None})
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(p) for p in first["loc"])
        raise ItemError(f"properties.{path}" if path else "properties", first["msg"]) from exc
    when = occurred_at or ctx.received_at
    return TrackedEvent(
        event_id=event_id,
        tenant_id=ctx.tenant_id,
        type="track",
        event=name.value,
        user_id=user_id,
        anonymous_id=identity.anonymous_id or None,
        occurred_at=min(when, ctx.received_at),
        received_at=ctx.received_at,
        properties=validated.model_dump(mode="json", exclude_none=True),
        context={"traits": identity.traits, "callback": {"provider": ctx.provider}},
    )


def map_items(
    items: Iterable[Any], map_one: Callable[[dict[str, Any]], TrackedEvent | None], result: MappedCallback
) -> MappedCallback:
    """Map each item of a callback array; a bad item is reported by index and field, the others go on."""
    for index, item in enumerate(items):
        try:
            if not isinstance(item, dict):
                raise ItemError("", "each item must be a JSON object")
            event = map_one(item)
        except ItemError as exc:
            where = f"[{index}].{exc.field}" if exc.field else f"[{index}]"
            result.errors.append(ItemError(where, exc.message))
            continue
        if event is None:
            result.ignored += 1
        else:
            result.events.append(event)
    return result


def as_items(body: Any) -> list[Any]:
    """A callback body as a list of items: providers send an array, some a single object."""
    if isinstance(body, list):
        return body
    if isinstance(body, dict):
        return [body]
    raise ItemError("body", "must be a JSON array of objects")
