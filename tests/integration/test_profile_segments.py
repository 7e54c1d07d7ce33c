"""Segments against the real PostgreSQL: the SQL audience and the incremental evaluation agree on random
profiles; entries and exits are published; erasure leaves nothing behind."""

import random
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select, text

from scrm_contracts.rules import EventRule, evaluate, parse_rule
from scrm_profile.adapters.orm import CustomerRow, EventRow
from scrm_profile.adapters.rules_sql import compile_rule, event_count
from scrm_profile.service.snapshots import rule_facts, snapshot_of
from tests.conftest import TenantCredentials
from tests.integration.profile_harness import EPOCH, ProfileHarness, event, harness, order, touch_result

STAGES = ["prospect", "new", "active", "silent", "sleeping", "churned"]
CITIES = ["Hangzhou", "Shanghai", "Chengdu", "hangzhou", "Åbo"]


@pytest.fixture
async def profile(isolated_db_url: str) -> AsyncIterator[ProfileHarness]:
    async for h in harness(isolated_db_url):
        yield h


def random_customer(rng: random.Random, tenant_id: str, i: int) -> CustomerRow:
    maybe = lambda value: value if rng.random() < 0.75 else None  # noqa: E731 - tiny local helper
    traits: dict[str, Any] = {}
    if rng.random() < 0.7:
        traits["city"] = rng.choice(CITIES)
    if rng.random() < 0.5:
        traits["kids"] = rng.choice([0, 1, 2, 3, "2", "two", True, None])
    if rng.random() < 0.3:
        traits["interests"] = rng.sample(["tea", "toys", "wine"], k=rng.randint(0, 2))
    return CustomerRow(
        tenant_id=tenant_id,
        customer_id=f"cus_rand{i:04d}",
        user_id=f"r{i}",
        lifecycle_stage=rng.choice(STAGES),
        orders_count=rng.randint(0, 9),
        revenue_total=Decimal(rng.randint(0, 5000)),
        last_order_at=maybe(EPOCH - timedelta(days=rng.randint(0, 400))),
        tier=maybe(rng.choice(["dt", "standard"])),
        tags=rng.sample(["vip", "baby", "b2b", "opt-out"], k=rng.randint(0, 3)),
        traits=traits,
        clv=maybe(Decimal(rng.randint(0, 900))),
        stored_value_balance=Decimal(rng.randint(0, 300)),
        sms_consent=rng.choice(["subscribed", "unsubscribed", "unknown"]),
        email_consent="unknown",
        wecom_staff_ids=rng.sample(["s1", "s2"], k=rng.randint(0, 2)),
        official_account_follower=rng.random() < 0.5,
        rfm_r=maybe(rng.randint(1, 5)),
        rfm_f=maybe(rng.randint(1, 5)),
        rfm_m=maybe(rng.randint(1, 5)),
        rfm_segment=maybe(rng.choice(["champions", "lost"])),
        birthday=None,
        version=1,
        created_at=EPOCH,
        updated_at=EPOCH,
    )


def random_leaf(rng: random.Random) -> dict[str, Any]:
    choice = rng.randrange(9)
    if choice == 0:
        return {
            "field": "lifecycle_stage",
            "op": rng.choice(["eq", "ne", "in", "not_in"]),
            "value": rng.choice(STAGES) if rng.random() < 0.5 else rng.sample(STAGES, k=2),
        }
    if choice == 1:
        return {
            "field": rng.choice(["orders_count", "revenue_total", "clv", "rfm.r", "stored_value_balance"]),
            "op": rng.choice(["gt", "gte", "lt", "lte", "eq", "ne", "exists", "not_exists"]),
            "value": rng.choice([0, 3, 2500, "3", 450.5]),
        }
    if choice == 2:
        return {
            "field": "tags",
            "op": rng.choice(["contains", "not_contains", "exists", "eq", "ne"]),
            "value": rng.choice(["vip", "baby", "none"]),
        }
    if choice == 3:
        return {
            "field": "traits.city",
            "op": rng.choice(["eq", "ne", "gt", "lt", "contains", "in", "exists"]),
            "value": rng.choice(["Hangzhou", "hangzhou", "Shanghai", "ang"])
            if rng.random() < 0.8
            else ["Hangzhou", "Chengdu"],
        }
    if choice == 4:
        return {
            "field": "traits.kids",
            "op": rng.choice(["eq", "ne", "gt", "gte", "lt", "exists", "not_exists"]),
            "value": rng.choice([0, 1, 2, "2", True]),
        }
    if choice == 5:
        return {
            "field": "last_order_at",
            "op": rng.choice(["within_last_days", "more_than_days_ago", "gt", "exists"]),
            "value": rng.choice([30, 180]) if rng.random() < 0.7 else "2030-06-01",
        }
    if choice == 6:
        return {
            "field": rng.choice(["tier", "rfm_segment", "reachability.sms"]),
            "op": rng.choice(["eq", "ne", "exists", "not_exists", "in"]),
            "value": rng.choice(["dt", "champions", "subscribed"]) if rng.random() < 0.7 else ["dt", "lost"],
        }
    if choice == 7:
        return {
            "field": rng.choice(["reachability.wecom_staff_ids", "traits.interests"]),
            "op": rng.choice(["contains", "not_contains", "exists", "not_exists"]),
            "value": rng.choice(["s1", "tea"]),
        }
    return {
        "event": "Viewed Lookbook",
        "min_count": rng.randint(0, 3),
        "max_count": rng.choice([None, 2, 4]),
        "within_days": rng.choice([None, 7, 30]),
    }


def random_rule(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth >= 2 or rng.random() < 0.4:
        return random_leaf(rng)
    kind = rng.choice(["all", "any", "not"])
    if kind == "not":
        return {"not": random_rule(rng, depth + 1)}
    return {kind: [random_rule(rng, depth + 1) for _ in range(rng.randint(1, 3))]}


async def test_sql_audience_and_incremental_evaluation_agree_on_random_profiles(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    rng = random.Random(4242)
    t = tenant.tenant_id
    async with profile.sessions() as session, session.begin():
        session.add_all([random_customer(rng, t, i) for i in range(120)])
        for i in range(120):
            for n in range(rng.randint(0, 4)):
                session.add(
                    EventRow(
                        tenant_id=t,
                        event_id=f"ev-{i}-{n}",
                        customer_id=f"cus_rand{i:04d}",
                        event="Viewed Lookbook",
                        occurred_at=EPOCH - timedelta(days=rng.randint(0, 40)),
                        properties={},
                    )
                )
    now = EPOCH
    checked = 0
    async with profile.sessions() as session:
        customers = (await session.execute(select(CustomerRow).where(CustomerRow.tenant_id == t))).scalars().all()
        for _ in range(60):
            raw, rule = _valid_random_rule(rng)
            by_sql = set(
                (
                    await session.execute(
                        select(CustomerRow.customer_id).where(CustomerRow.tenant_id == t, compile_rule(rule, now))
                    )
                ).scalars()
            )
            in_memory = set()
            for c in customers:
                counts: dict[str, int] = {}

                async def count(r: EventRule, c: CustomerRow = c) -> int:
                    return int((await session.execute(select(event_count(r, now, t, c.customer_id)))).scalar_one())

                for leaf in _event_rules(raw):
                    er = EventRule.model_validate(leaf)
                    counts[er.model_dump_json()] = await count(er)
                if evaluate(
                    rule, rule_facts(c, snapshot_of(c)), now, lambda r, counts=counts: counts[r.model_dump_json()]
                ):
                    in_memory.add(c.customer_id)
            assert by_sql == in_memory, f"rule {raw} disagrees on {sorted(by_sql ^ in_memory)[:5]}"
            checked += len(by_sql)
    assert checked > 0, "the random rules matched somebody"


def _valid_random_rule(rng: random.Random) -> tuple[dict[str, Any], Any]:
    from pydantic import ValidationError

    while True:  # the generator can build invalid combinations (e.g. "in" with one value): draw again
        raw = random_rule(rng)
        try:
            return raw, parse_rule(raw)
        except ValidationError:
            continue


def _event_rules(raw: Any) -> list[dict[str, Any]]:
    if isinstance(raw, dict) and "event" in raw:
        return [raw]
    if isinstance(raw, dict):
        return [e for v in raw.values() for e in _event_rules(v)]
    if isinstance(raw, list):
        return [e for v in raw for e in _event_rules(v)]
    return []


async def test_customers_enter_and_leave_a_segment_as_they_change(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    from scrm_profile.adapters.orm import SegmentRow
    from scrm_profile.service.segments import rule_json

    t = tenant.tenant_id
    rule = parse_rule(
        {
            "all": [
                {"field": "orders_count", "op": "gte", "value": 2},
                {"field": "revenue_total", "op": "gte", "value": 100},
            ]
        }
    )
    async with profile.sessions() as session, session.begin():
        session.add(
            SegmentRow(
                tenant_id=t,
                segment_id="seg_loyal",
                name="Loyal",
                rule=rule_json(rule),
                time_dependent=False,
                created_at=EPOCH,
                updated_at=EPOCH,
            )
        )
    await profile.feed([order(t, "g1", "g1-o1", "60")])
    assert await _members(profile, t) == set()
    await profile.feed([order(t, "g1", "g1-o2", "60")])
    g1 = await profile.customer(t, "g1")
    assert g1 is not None and await _members(profile, t) == {g1.customer_id}
    await profile.feed([event(t, "g1", "Order Refunded", properties={"order_id": "g1-o2"})])
    assert await _members(profile, t) == set()


async def _members(profile: ProfileHarness, tenant_id: str) -> set[str]:
    async with profile.sessions() as session:
        return set(
            (
                await session.execute(
                    text("SELECT customer_id FROM profile.segment_members WHERE tenant_id = :t"), {"t": tenant_id}
                )
            ).scalars()
        )


async def test_erasure_leaves_nothing_behind(profile: ProfileHarness, tenant: TenantCredentials) -> None:
    from scrm_profile.service.customers import erase

    t = tenant.tenant_id
    await profile.feed(
        [
            event(
                t, "e1", kind="identify", traits={"phone": "13900139000", "email": "e1@example.com", "city": "Xi'an"}
            ),
            order(t, "e1", "e1-o1", "30"),
            event(t, "e1", "Order Refunded", properties={"order_id": "e1-o1", "total": "5"}),
            event(t, "e1", "Viewed Lookbook", properties={"look": 1}),
        ]
    )
    customer = await profile.customer(t, "e1")
    assert customer is not None
    async with profile.sessions() as session, session.begin():
        await erase(session, await session.get(CustomerRow, (t, customer.customer_id)), profile.clock.now())
    async with profile.sessions() as session:
        for table in ("customers", "identities", "orders", "events", "touches", "segment_members"):
            left = (
                await session.execute(
                    text(f"SELECT count(*) FROM profile.{table} WHERE tenant_id = :t AND customer_id = :c"),
                    {"t": t, "c": customer.customer_id},
                )
            ).scalar_one()
            assert left == 0, table
        refunds = (
            await session.execute(text("SELECT count(*) FROM profile.refunds WHERE tenant_id = :t"), {"t": t})
        ).scalar_one()
        anywhere = (
            await session.execute(
                text(
                    "SELECT count(*) FROM profile.customers WHERE phone = '+8613900139000' OR email = 'e1@example.com'"
                )
            )
        ).scalar_one()
    assert refunds == 0 and anywhere == 0


async def test_a_touch_result_for_an_erased_customer_is_dropped_and_a_merged_ones_goes_to_the_survivor(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    from scrm_profile.service.customers import erase

    t = tenant.tenant_id
    day_before = EPOCH - timedelta(days=1)
    await profile.feed([order(t, "g0", "g0-o1", "5", at=day_before)])
    await profile.feed([order(t, "g1", "g1-o1", "30"), event(t, "g2", kind="identify", traits={"email": "g2@ex.com"})])
    gone, other = await profile.customer(t, "g1"), await profile.customer(t, "g2")
    assert gone is not None and other is not None
    async with profile.sessions() as session, session.begin():
        await erase(session, await session.get(CustomerRow, (t, gone.customer_id)), profile.clock.now())
    # g0 (the older customer) turns out to have g2's e-mail: g2 is merged into g0
    await profile.feed([event(t, "g0", kind="identify", traits={"email": "G2@ex.com"})])
    survivor = await profile.customer(t, "g2")
    assert survivor is not None and survivor.customer_id != other.customer_id
    # the welcome touches were in flight: their results arrive now
    await profile.feed([touch_result(t, gone.customer_id), touch_result(t, other.customer_id, "clicked")])
    async with profile.sessions() as session:
        owners = (
            (await session.execute(text("SELECT customer_id FROM profile.touches WHERE tenant_id = :t"), {"t": t}))
            .scalars()
            .all()
        )
    assert owners == [survivor.customer_id], "nothing comes back for the erased person; the click is the survivor's"
