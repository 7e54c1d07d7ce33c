"""The customer as other services see it (``customer.updated``), and the outgoing change records."""

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any, TypeAlias

from scrm_contracts import CustomerUpdated, ProfileChange, Topic, record_key
from scrm_contracts.base import Contract
from scrm_kit.outbox import OutgoingRecord
from scrm_profile.adapters.orm import CustomerRow

ZERO = Decimal("0")


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


def snapshot_of(customer: CustomerRow) -> dict[str, Any]:
    """The replicated view of a customer row: ``CustomerSnapshot``'s fields as its ``model_dump()`` gives them,
    built without the model (once per applied event, where the model cost more than the rest of the snapshot's
    work). ``services/profile/tests/unit/test_snapshots.py`` holds it to the model."""
    traits = customer.traits or {}
    return {
        "lifecycle_stage": customer.lifecycle_stage,
        "tier": customer.tier,
        "owner_staff_id": customer.owner_staff_id,
        "store_id": customer.store_id,
        "timezone": customer.timezone,
        "birthday": customer.birthday,
        "membership_level": customer.membership_level,
        "membership_started_at": _aware(customer.membership_started_at),
        "membership_expires_at": _aware(customer.membership_expires_at),
        "orders_count": customer.orders_count or 0,
        "revenue_total": customer.revenue_total or ZERO,
        "first_order_at": _aware(customer.first_order_at),
        "last_order_at": _aware(customer.last_order_at),
        "stored_value_balance": customer.stored_value_balance or ZERO,
        "clv": customer.clv,
        "rfm_segment": customer.rfm_segment,
        "tags": list(customer.tags or []),
        "traits": dict(traits),
        "contact": {
            "phone": customer.phone,
            "email": customer.email,
            "wecom_external_userid": traits.get("wecom_external_userid"),
            "wechat_openid": traits.get("wechat_openid"),
            "wechat_unionid": traits.get("wechat_unionid"),
        },
        "reachability": {
            "wecom_staff_ids": list(customer.wecom_staff_ids or []),
            "official_account_follower": bool(customer.official_account_follower),
            "sms": customer.sms_consent,
            "email": customer.email_consent,
        },
    }


ROW_COLUMNS = tuple(c.name for c in CustomerRow.__table__.columns)


@dataclass(slots=True)
class Before:
    """A customer's columns as they stood before an event."""

    row: dict[str, Any]


def _row(customer: CustomerRow) -> dict[str, Any]:
    if isinstance(customer, SimpleNamespace):  # the batch's customers hold exactly the row's columns
        return vars(customer)
    return {name: getattr(customer, name) for name in ROW_COLUMNS}


def before_event(customer: CustomerRow) -> Before:
    return Before(dict(_row(customer)))


def settle(customer: CustomerRow, before: Before | None, now: datetime) -> tuple[dict[str, Any] | None, bool, bool]:
    """After an event: (the snapshot if the row changed, else None; whether to publish it; whether the row changed).
    The version moves only with the snapshot and ``updated_at`` only with the row; ``before`` None (a customer the
    event created or merged, an operator's change) publishes and writes whatever changed. An unchanged row, which
    most events leave (a product view, a page view, known traits again), costs one comparison of the columns."""
    if before is None:
        snapshot = snapshot_of(customer)
        published = row_changed = True
    else:
        if _row(customer) == before.row:
            return None, False, False
        snapshot = snapshot_of(customer)
        published = snapshot != snapshot_of(SimpleNamespace(**before.row))  # type: ignore[arg-type]
        row_changed = True
    if published:
        customer.version = (customer.version or 0) + 1
    if row_changed:
        customer.updated_at = now
    return snapshot, published, row_changed


def rule_facts(customer: CustomerRow, snapshot: dict[str, Any]) -> dict[str, Any]:
    """What segment and journey rules see: the snapshot plus the RFM scores."""
    return {**snapshot, "rfm": {"r": customer.rfm_r, "f": customer.rfm_f, "m": customer.rfm_m}}


Change: TypeAlias = ProfileChange | OutgoingRecord
"""A change to publish: a contract model, or the record built straight from its fields (``wire_record``)."""


def wire_record(model: type[Contract], **fields: Any) -> OutgoingRecord:
    """The record of ``model(**fields)``, built without the model (the consumer's per-event changes)."""
    return OutgoingRecord(
        Topic.PROFILE_CHANGES.value, record_key(fields["tenant_id"], fields["customer_id"]), model.wire_of(**fields)
    )


def change_record(change: ProfileChange) -> OutgoingRecord:
    return OutgoingRecord(
        Topic.PROFILE_CHANGES.value, record_key(change.tenant_id, change.customer_id), change.to_wire()
    )


def updated_record(customer: CustomerRow, snapshot: dict[str, Any], cause: str, now: datetime) -> OutgoingRecord:
    """``customer.updated`` at the customer's current version (``settle`` or the caller moves it first)."""
    return wire_record(
        CustomerUpdated,
        event_id=f"updated:{customer.customer_id}:{customer.version}:{cause}"[:300],
        tenant_id=customer.tenant_id,
        customer_id=customer.customer_id,
        user_id=customer.user_id,
        occurred_at=now,
        version=customer.version,
        snapshot=snapshot,
    )


def records(changes: Iterable[Change]) -> list[OutgoingRecord]:
    return [c if isinstance(c, OutgoingRecord) else change_record(c) for c in changes]
