"""The set-based batch consumer against the event by event one: the same random stream (orders, refunds before and
after their orders, identifies, tracks, stored value, duplicates, retried orders, merges), shuffled, fed into two
tenants, must leave the same customers and segment members and publish the same change records."""

import random
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import orjson
import pytest
from aiokafka.structs import ConsumerRecord
from sqlalchemy import text

from scrm_contracts import Topic, TouchResult, TrackedEvent
from scrm_kit.errors import InvalidInput
from scrm_profile.adapters.orm import SegmentRow
from scrm_profile.service.consume import ProfileConsumer
from scrm_profile.service.segments import rule_json
from tests.conftest import TenantCredentials
from tests.integration.profile_harness import EPOCH, ProfileHarness, as_record, event, harness, money, order

CLV_PARAMS = {
    "bgnbd": {"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
}
SEGMENTS = {
    "seg_loyal": {
        "all": [
            {"field": "orders_count", "op": "gte", "value": 2},
            {"field": "revenue_total", "op": "gte", "value": 300},
        ]
    },
    "seg_browsers": {"event": "Viewed Lookbook", "min_count": 2, "within_days": 30},
    "seg_sale_browsers": {"event": "Viewed Lookbook", "min_count": 1, "where": {"sale": True}},
    "seg_vip": {"field": "tags", "op": "contains", "value": "vip"},
    "seg_active": {"field": "lifecycle_stage", "op": "in", "value": ["new", "active"]},
}  # fmt: skip
CUSTOMER_ID = re.compile(r"cus_[0-9a-f]{20}")


@pytest.fixture
async def profile(isolated_db_url: str) -> AsyncIterator[ProfileHarness]:
    async for h in harness(isolated_db_url):
        yield h


def random_stream(rng: random.Random, t: str, users: int = 40) -> list[TrackedEvent]:
    """Every kind of event the consumer applies, for ``users`` customers; times distinct, so merges are decided by
    age alone. The same seed gives the same event ids, so two tenants get the very same stream."""
    seq = iter(range(1_000_000))

    def at(days: float) -> Any:
        return EPOCH - timedelta(days=days, seconds=next(seq))

    stream: list[TrackedEvent] = []
    for u in range(users):
        user = f"u{u}"
        eid = f"{user}-e"
        if rng.random() < 0.5:
            traits = {"email": f"{user}@Example.com", "city": rng.choice(["Hangzhou", "Chengdu"])}
            if rng.random() < 0.5:
                traits["phone"] = f"1380013{u:04d}"
            stream.append(
                event(t, user, kind="identify", traits=traits, at=at(rng.randint(0, 50)), event_id=f"{eid}id")
            )
        for n in range(rng.randint(0, 5)):
            order_id = f"{user}-o{n}"
            amount = Decimal(rng.randint(100, 99_999)) / 100
            placed_at = at(rng.randint(0, 300))
            stream.append(order(t, user, order_id, amount, at=placed_at, event_id=f"{eid}o{n}"))
            if rng.random() < 0.3:  # partial or full refund, the stream is shuffled so sometimes before the order
                props: dict[str, Any] = {"order_id": order_id}
                if rng.random() < 0.6:
                    props["total"] = str((amount / 3).quantize(Decimal("0.01")))
                stream.append(event(t, user, "Order Refunded", at=placed_at + timedelta(days=1), properties=props,
                                    event_id=f"{eid}r{n}"))  # fmt: skip
            if rng.random() < 0.15:  # retried with a new message id: same order id
                stream.append(order(t, user, order_id, amount, at=placed_at, event_id=f"{eid}o{n}retry"))
        for n in range(rng.randint(0, 4)):
            stream.append(event(t, user, "Viewed Lookbook", at=at(rng.randint(0, 40)), event_id=f"{eid}v{n}",
                                properties={"sale": rng.random() < 0.3}))  # fmt: skip
        if rng.random() < 0.3:
            stream.append(event(t, user, "Tags Changed", properties={"add": rng.sample(["vip", "tea", "baby"], k=2)},
                                at=at(rng.randint(0, 10)), event_id=f"{eid}tag"))  # fmt: skip
        if rng.random() < 0.3:
            for n, name in enumerate(["Stored Value Topped Up", "Stored Value Spent"]):
                stream.append(event(t, user, name, properties={"amount": rng.choice(["100", "12.5", "33.335"])},
                                    at=at(rng.randint(0, 10)), event_id=f"{eid}sv{n}"))  # fmt: skip
        if rng.random() < 0.2:
            stream.append(event(t, user, "Membership Started", properties={"level": "gold"}, at=at(5),
                                event_id=f"{eid}m"))  # fmt: skip
        if rng.random() < 0.2:
            stream.append(event(t, user, "WeCom Contact Added", at=at(3), event_id=f"{eid}wc",
                                properties={"staff_id": "s1", "external_userid": f"wm-{user}"}))  # fmt: skip
        if rng.random() < 0.2:
            stream.append(event(t, user, kind="page", at=at(1), event_id=f"{eid}pg"))
        if rng.random() < 0.15:  # a visitor browsing anonymously first; identified later, which merges the two
            anon = f"anon-{user}"
            stream.append(event(t, None, "Viewed Lookbook", anonymous_id=anon, at=at(2), event_id=f"{eid}anon"))
            stream.append(event(t, user, kind="identify", anonymous_id=anon, at=at(0.5), event_id=f"{eid}join"))
    for n in range(3):  # one identify naming the e-mail of one customer and the phone of another
        a, b = rng.sample(range(users), k=2)
        stream.append(event(t, None, kind="identify", anonymous_id=f"tie-{n}", at=at(0.1), event_id=f"tie{n}",
                            traits={"email": f"u{a}@example.com", "phone": f"1380013{b:04d}"}))  # fmt: skip
    redelivered = rng.sample(stream, k=len(stream) // 5)
    everything = stream + redelivered
    rng.shuffle(everything)
    return everything


async def platform_stream(profile: ProfileHarness, tenant_id: str, seed: int) -> list[TrackedEvent | TouchResult]:
    """Touch results and the platform's own events, which name customers by our id: known ones, merged-away ones
    (they follow their survivor) and a gone one. Ids differ per tenant; the choices follow the seed."""
    rng = random.Random(seed)
    async with profile.sessions() as session:
        rows = (
            await session.execute(
                text(
                    "SELECT kind, value, customer_id FROM profile.identities WHERE tenant_id = :t ORDER BY kind, value"
                ),
                {"t": tenant_id},
            )
        ).all()
    by_user = {value: c for kind, value, c in rows if kind == "user_id"}
    merged: dict[str, list[str]] = {}
    for kind, value, c in rows:
        if kind == "merged_customer_id":
            merged.setdefault(c, []).append(value)
    survivors = {c: user for user, c in by_user.items()}
    losers = sorted((survivors[c], old[0]) for c, old in merged.items() if len(old) == 1 and c in survivors)
    out: list[TrackedEvent | TouchResult] = []
    for n, user in enumerate(rng.sample(sorted(by_user, key=lambda u: int(u[1:])), k=25)):
        out.append(touch(tenant_id, by_user[user], f"tr{n}", rng.choice(["sent", "delivered", "opened", "clicked"]),
                         EPOCH - timedelta(hours=rng.randint(0, 500))))  # fmt: skip
        out.append(event(tenant_id, None, "Tags Changed", customer_id=by_user[user], event_id=f"pf{n}",
                         properties={"add": [rng.choice(["j1", "j2"])]}))  # fmt: skip
        if rng.random() < 0.4:
            out.append(
                order(tenant_id, user, f"{user}-late{n}", "88", at=EPOCH - timedelta(hours=n), event_id=f"lt{n}")
            )
    for n, (_, loser) in enumerate(losers):
        out.append(event(tenant_id, None, "Tags Changed", customer_id=loser, event_id=f"pl{n}",
                         properties={"add": ["merged"]}))  # fmt: skip
        out.append(touch(tenant_id, loser, f"tl{n}", "clicked", EPOCH))
    gone = "cus_" + "0" * 20
    out += [event(tenant_id, None, "Tags Changed", customer_id=gone, event_id="gone", properties={"add": ["x"]})]
    out += [touch(tenant_id, gone, "tg", "clicked", EPOCH)]  # erased while in flight: dropped
    rng.shuffle(out)
    return out


def touch(tenant_id: str, customer_id: str, event_id: str, status: str, at: Any) -> TouchResult:
    return TouchResult(event_id=event_id, touch_key=f"tk-{event_id}", tenant_id=tenant_id, customer_id=customer_id,
                       channel="sms", status=status, occurred_at=at)  # type: ignore[arg-type]  # fmt: skip


def wire(message: TrackedEvent | TouchResult) -> Any:
    if isinstance(message, TrackedEvent):
        return as_record(message)
    value = message.to_wire()
    return ConsumerRecord(Topic.TOUCH_RESULTS.value, 0, 0, 0, 0, b"k", value, None, 1, len(value), [])


async def prepare(profile: ProfileHarness, tenant_id: str) -> None:
    async with profile.sessions() as session, session.begin():
        for segment_id, rule in SEGMENTS.items():
            from scrm_contracts.rules import parse_rule

            session.add(SegmentRow(tenant_id=tenant_id, segment_id=segment_id, name=segment_id,
                                   rule=rule_json(parse_rule(rule)), time_dependent=False, created_at=EPOCH,
                                   updated_at=EPOCH))  # fmt: skip
        await session.execute(
            text(
                "INSERT INTO profile.tenant_settings (tenant_id, settings, clv_params) "
                "VALUES (:t, '{}', CAST(:p AS jsonb))"
            ),
            {"t": tenant_id, "p": orjson.dumps(CLV_PARAMS).decode()},
        )


def retenant(stream: list[TrackedEvent], tenant_id: str) -> list[TrackedEvent]:
    return [m.model_copy(update={"tenant_id": tenant_id}) for m in stream]


async def feed(consumer: ProfileConsumer, stream: list[Any], sizes: list[int]) -> None:
    start, n = 0, 0
    while start < len(stream):
        size = sizes[n % len(sizes)]
        await consumer([wire(m) for m in stream[start : start + size]])
        start, n = start + size, n + 1


async def state(profile: ProfileHarness, tenant_id: str) -> tuple[dict[str, Any], set[str], dict[str, str]]:
    """Customers (labelled by the identifiers they own), segment members and touches (with their owner's label)."""
    async with profile.sessions() as session:
        customers = (
            (await session.execute(text("SELECT * FROM profile.customers WHERE tenant_id = :t"), {"t": tenant_id}))
            .mappings()
            .all()
        )
        members = (
            await session.execute(
                text("SELECT segment_id, customer_id FROM profile.segment_members WHERE tenant_id = :t"),
                {"t": tenant_id},
            )
        ).all()
        identities = (
            await session.execute(
                text("SELECT kind, value, customer_id FROM profile.identities WHERE tenant_id = :t"), {"t": tenant_id}
            )
        ).all()
        touches = (
            await session.execute(
                text("SELECT event_id, customer_id, status FROM profile.touches WHERE tenant_id = :t"), {"t": tenant_id}
            )
        ).all()
    owned: dict[str, list[str]] = {}
    for kind, value, customer_id in identities:
        if kind != "merged_customer_id":
            owned.setdefault(customer_id, []).append(f"{kind}={value}")
    labels = {c["customer_id"]: "|".join(sorted(owned.get(c["customer_id"], []))) for c in customers}
    skip = {"customer_id", "tenant_id", "expected_purchases", "probability_alive"}
    rows = {labels[c["customer_id"]]: {k: v for k, v in c.items() if k not in skip} for c in customers}
    for c in customers:  # floats from the CLV model: equal to the last few bits
        rows[labels[c["customer_id"]]]["value"] = (
            round(c["expected_purchases"] or 0, 9),
            round(c["probability_alive"] or 0, 9),
        )
    rows["(touches)"] = {"all": {(e, labels.get(c, "?"), status) for e, c, status in touches}}
    return rows, {f"{s}:{labels[c]}" for s, c in members}, labels


def normalised(records: list[dict[str, Any]], first_cause: dict[str, str]) -> set[str]:
    """The change records with customer ids replaced by the event that created the customer (ids are random)."""
    out = set()
    for r in records:
        body = dict(r)
        body.pop("tenant_id")
        out.add(CUSTOMER_ID.sub(lambda m: first_cause.get(m.group(0), "?"), orjson.dumps(body).decode()))
    return out


def creators(records: list[dict[str, Any]]) -> dict[str, str]:
    """Customer id -> the cause of its first snapshot (version 1): the event that created it."""
    found = {}
    for r in records:
        if r["type"] == "customer.updated" and r["version"] == 1:
            found[r["customer_id"]] = r["event_id"].split(":", 3)[3]
    return found


async def published(profile: ProfileHarness, tenant_id: str) -> list[dict[str, Any]]:
    """Every change record the tenant's customers published (no relay runs on this database: all still there)."""
    return await profile.outbox(tenant_id)


async def test_batch_and_event_by_event_paths_agree_on_a_random_stream(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    batched, single = f"{tenant.tenant_id}-b", f"{tenant.tenant_id}-s"
    for t in (batched, single):
        await prepare(profile, t)
    stream = random_stream(random.Random(7), "x")
    by_batch = ProfileConsumer(profile.sessions, profile.clock)
    by_event = ProfileConsumer(profile.sessions, profile.clock, batched=False)
    await feed(by_batch, retenant(stream, batched), [500, 37, 120])
    await feed(by_event, retenant(stream, single), [500, 37, 120])
    await feed(by_batch, await platform_stream(profile, batched, 3), [60, 7])
    await feed(by_event, await platform_stream(profile, single, 3), [60, 7])

    got_b, members_b, _ = await state(profile, batched)
    got_s, members_s, _ = await state(profile, single)
    assert len(got_b) > 30 and len(got_b["(touches)"]["all"]) > 20
    assert sum(1 for c in got_b.values() if c.get("orders_count", 0) > 0) > 10
    assert got_b.keys() == got_s.keys()
    for label in got_s:
        assert got_b[label] == got_s[label], label
    assert members_b == members_s and len(members_b) > 10

    by_batch, by_event = await published(profile, batched), await published(profile, single)
    assert {r["type"] for r in by_batch} >= {
        "customer.updated", "order.recorded", "event.tracked", "customer.stage_changed", "customers.merged",
        "segment.entered",
    }  # fmt: skip
    assert len({r["event_id"] for r in by_batch}) == len(by_batch), "every change published once"
    by_batch_path = normalised(by_batch, creators(by_batch))
    by_event_path = normalised(by_event, creators(by_event))
    assert sorted(by_batch_path ^ by_event_path)[:4] == []
    assert len(by_batch_path) == len(by_batch) == len(by_event)


async def test_a_bad_record_mid_batch_is_set_aside_and_the_rest_applied(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    t = tenant.tenant_id
    good = [order(t, "b1", "b1-o1", "40"), order(t, "b2", "b2-o1", "60")]
    bad = event(t, "b3", "Order Completed", properties={"order_id": "b3-o1", "total": "-5"})
    records = [as_record(good[0]), as_record(bad), as_record(good[1])]
    with pytest.raises(InvalidInput):
        await profile.consumer(records)
    # the runner then retries record by record: the applied ones change nothing, the bad one is dead-lettered
    for record in records:
        if record is records[1]:
            with pytest.raises(InvalidInput):
                await profile.consumer([record])
        else:
            await profile.consumer([record])
    b1, b2 = await profile.customer(t, "b1"), await profile.customer(t, "b2")
    assert b1 and b2 and (b1.orders_count, b1.revenue_total, b2.revenue_total) == (1, money(40), money(60))
    assert b1.version == 1 and b2.version == 1
    assert await profile.customer(t, "b3") is None
