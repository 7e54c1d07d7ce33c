"""The change records the consumer builds without pydantic models are the models' own bytes."""

import random
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import orjson

from scrm_contracts import (
    Contact,
    CustomerSnapshot,
    CustomerUpdated,
    EventTracked,
    OrderRecorded,
    Reachability,
    SegmentEntered,
)
from scrm_profile.adapters.bulk import CUSTOMER_COLUMNS
from scrm_profile.service.snapshots import rule_facts, snapshot_of, updated_record

NOW = datetime(2031, 6, 1, 12, 30, tzinfo=UTC)
SHANGHAI = timezone(timedelta(hours=8))


def _when(rng: random.Random) -> datetime | None:
    """None, or a time as rows and rules hold them: UTC, another offset, naive, with or without microseconds."""
    at = NOW - timedelta(days=rng.randrange(900), seconds=rng.randrange(86_400), microseconds=rng.choice([0, 123_456]))
    return rng.choice([None, at, at.astimezone(SHANGHAI), at.replace(tzinfo=None)])


def _money(rng: random.Random) -> Decimal:
    return Decimal(rng.randrange(-10_000, 10**8)) / rng.choice([1, 10, 100])


def random_customer(rng: random.Random) -> SimpleNamespace:
    values: dict[str, Any] = {name: None for name, _ in CUSTOMER_COLUMNS}
    maybe = lambda value: rng.choice([None, value])  # noqa: E731
    traits: dict[str, Any] = {
        "city": maybe("杭州"),
        "score": rng.choice([1.5, 3, -0.25, 1e-7, 12345678.9, True, None]),
        "nested": {"list": [1, "two", {"three": 3.0}]},
    }
    for key in ("wecom_external_userid", "wechat_openid", "wechat_unionid"):
        if rng.random() < 0.5:
            traits[key] = f"{key}-{rng.randrange(100)}"
    values.update(
        tenant_id="t-snap",
        customer_id=f"cus_{rng.randrange(10**6):06d}",
        user_id=maybe(f"u{rng.randrange(100)}"),
        lifecycle_stage=rng.choice(["prospect", "new", "active", "silent", "sleeping", "churned"]),
        tier=maybe(rng.choice(["high_value", "KA"])),
        owner_staff_id=maybe("staff-1"),
        store_id=maybe("store-9"),
        timezone=maybe("Asia/Shanghai"),
        birthday=maybe(date(1990, 1, 1) + timedelta(days=rng.randrange(9000))),
        membership_level=maybe("gold"),
        membership_started_at=_when(rng),
        membership_expires_at=_when(rng),
        orders_count=rng.choice([None, 0, 1, 7, 250]),
        revenue_total=rng.choice([None, _money(rng)]),
        first_order_at=_when(rng),
        last_order_at=_when(rng),
        stored_value_balance=rng.choice([None, _money(rng)]),
        clv=rng.choice([None, Decimal("0.00"), _money(rng)]),
        rfm_segment=maybe("champions"),
        rfm_r=maybe(5),
        tags=rng.choice([None, [], ["vip", "茶"]]),
        traits=rng.choice([None, traits]),
        phone=maybe("+8613800138000"),
        email=maybe("a@example.com"),
        wecom_staff_ids=rng.choice([None, [], ["s1", "s2"]]),
        official_account_follower=rng.choice([None, False, True]),
        sms_consent=rng.choice(["subscribed", "unsubscribed", "unknown"]),
        email_consent=rng.choice(["subscribed", "unsubscribed", "unknown"]),
        version=rng.randrange(1, 10**6),
    )
    return SimpleNamespace(**values)


def model_snapshot(c: SimpleNamespace) -> CustomerSnapshot:
    """The snapshot as the model builds it from the row (what the consumer did before building it by hand)."""
    aware = lambda v: v.replace(tzinfo=UTC) if v is not None and v.tzinfo is None else v  # noqa: E731
    traits = c.traits or {}
    return CustomerSnapshot(
        lifecycle_stage=c.lifecycle_stage,
        tier=c.tier,
        owner_staff_id=c.owner_staff_id,
        store_id=c.store_id,
        timezone=c.timezone,
        birthday=c.birthday,
        membership_level=c.membership_level,
        membership_started_at=aware(c.membership_started_at),
        membership_expires_at=aware(c.membership_expires_at),
        orders_count=c.orders_count or 0,
        revenue_total=c.revenue_total or Decimal("0"),
        first_order_at=aware(c.first_order_at),
        last_order_at=aware(c.last_order_at),
        stored_value_balance=c.stored_value_balance or Decimal("0"),
        clv=c.clv,
        rfm_segment=c.rfm_segment,
        tags=list(c.tags or []),
        traits=dict(traits),
        contact=Contact(
            phone=c.phone,
            email=c.email,
            wecom_external_userid=traits.get("wecom_external_userid"),
            wechat_openid=traits.get("wechat_openid"),
            wechat_unionid=traits.get("wechat_unionid"),
        ),
        reachability=Reachability(
            wecom_staff_ids=list(c.wecom_staff_ids or []),
            official_account_follower=bool(c.official_account_follower),
            sms=c.sms_consent,
            email=c.email_consent,
        ),
    )


def test_customer_updated_is_the_models_bytes_and_rules_see_the_models_values() -> None:
    rng = random.Random(7)
    for n in range(2_000):
        customer = random_customer(rng)
        snapshot = snapshot_of(customer)
        model = model_snapshot(customer)
        assert snapshot == model.model_dump(), n
        record = updated_record(customer, snapshot, f"e{n}", NOW)
        expected = CustomerUpdated(
            event_id=f"updated:{customer.customer_id}:{customer.version}:e{n}",
            tenant_id=customer.tenant_id,
            customer_id=customer.customer_id,
            user_id=customer.user_id,
            occurred_at=NOW,
            version=customer.version,
            snapshot=model,
        )
        assert record.value == expected.to_wire(), n
        assert record.key == f"t-snap:{customer.customer_id}".encode()
        assert rule_facts(customer, snapshot)["rfm"] == {"r": customer.rfm_r, "f": None, "m": None}


def test_wire_of_matches_the_model_for_change_records() -> None:
    rng = random.Random(3)
    for n in range(500):
        at = _when(rng) or NOW
        common = {
            "event_id": f"x:{n}",
            "tenant_id": "t",
            "customer_id": "cus_1",
            "user_id": rng.choice([None, "u1"]),
            "occurred_at": at if at.tzinfo else at.replace(tzinfo=UTC),
        }
        tracked = {"event": "Viewed Product", "source_event_id": f"e{n}", "properties": {"sku": "a", "price": n / 7}}
        order = {"order_id": f"o{n}", "amount": _money(rng), "currency": "CNY", "orders_count": n,
                 "revenue_total": _money(rng)}  # fmt: skip
        for model, fields in [
            (EventTracked, common | tracked),
            (EventTracked, common | {"event": "Page", "source_event_id": "e"}),  # a default factory left out
            (OrderRecorded, common | order),
            (SegmentEntered, common | {"segment_id": "vip", "segment_name": "VIP 客户"}),
        ]:
            assert model.wire_of(**fields) == model(**fields).to_wire(), (model, n)


def test_wire_of_writes_what_orjson_cannot_through_the_model() -> None:
    fields = {"event_id": "x", "tenant_id": "t", "customer_id": "c", "occurred_at": NOW, "event": "Big",
              "source_event_id": "e", "properties": {"n": 2**70}}  # fmt: skip
    wire = EventTracked.wire_of(**fields)
    assert orjson.loads(wire.replace(b"1180591620717411303424", b'"big"'))["properties"] == {"n": "big"}
    assert wire == EventTracked(**fields).to_wire()
