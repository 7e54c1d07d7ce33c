"""Profile against the real PostgreSQL: exact aggregates, refunds, merges, stages by time, RFM, erasure."""

import random
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import timedelta, timezone
from decimal import Decimal

import pytest
from sqlalchemy import text

from scrm_profile.adapters.orm import SegmentRow
from scrm_profile.domain.clv_summary import summarise_orders
from scrm_profile.domain.customers import OrderFact
from scrm_profile.domain.rfm import segment_of
from scrm_profile.service.jobs import LifecycleSweep, refresh_tenant_value
from scrm_profile.service.valuation import recompute_rfm, summaries
from tests.conftest import TenantCredentials
from tests.integration.profile_harness import EPOCH, ProfileHarness, event, harness, money, order


@pytest.fixture
async def profile(isolated_db_url: str) -> AsyncIterator[ProfileHarness]:
    async for h in harness(isolated_db_url):
        yield h


async def test_aggregates_are_exact_under_shuffled_duplicated_and_late_events(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    rng = random.Random(20311)
    t = tenant.tenant_id
    truth: dict[str, dict[str, tuple[Decimal, Decimal, object]]] = defaultdict(dict)
    stream = []
    for u in range(30):
        user = f"u{u}"
        for n in range(rng.randint(1, 6)):
            order_id = f"{user}-o{n}"
            amount = Decimal(rng.randint(100, 99_999)) / 100
            at = EPOCH - timedelta(days=rng.randint(0, 400), minutes=rng.randint(0, 1000))
            placed = order(t, user, order_id, amount, at=at)
            stream.append(placed)
            refunded = Decimal("0")
            if rng.random() < 0.25:  # a partial or full refund, sometimes arriving before the order
                part = amount if rng.random() < 0.4 else (amount / 3).quantize(Decimal("0.01"))
                refunded = part
                stream.append(
                    event(
                        t,
                        user,
                        "Order Refunded",
                        at=at + timedelta(days=2),
                        properties={"order_id": order_id, "total": str(part)},
                    )
                )
            truth[user][order_id] = (amount, refunded, at)
    duplicates = rng.sample(stream, k=len(stream) // 4)  # redelivered with the same event id
    retried = [
        order(t, m.user_id or "", m.properties["order_id"], m.properties["total"], at=m.occurred_at)
        for m in rng.sample([m for m in stream if m.event == "Order Completed"], k=10)
    ]  # new messageId
    everything = stream + duplicates + retried
    rng.shuffle(everything)
    await profile.feed(everything, batch=37)

    for user, orders in truth.items():
        kept = [(a - r, at) for a, r, at in orders.values() if r < a]
        customer = await profile.customer(t, user)
        assert customer is not None
        assert customer.orders_count == len(kept), user
        assert customer.revenue_total == money(sum((net for net, _ in kept), Decimal("0"))), user
        assert customer.first_order_at == (min(at for _, at in kept) if kept else None), user
        assert customer.last_order_at == (max(at for _, at in kept) if kept else None), user


async def test_a_refund_before_its_order_is_applied_when_the_order_arrives(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    t = tenant.tenant_id
    await profile.feed([event(t, "r1", "Order Refunded", properties={"order_id": "r1-o1", "total": "40"})])
    await profile.feed([order(t, "r1", "r1-o1", "100"), order(t, "r1", "r1-o2", "50")])
    await profile.feed([event(t, "r1", "Order Refunded", properties={"order_id": "r1-o2"})])  # full refund
    customer = await profile.customer(t, "r1")
    assert customer is not None
    assert (customer.orders_count, customer.revenue_total) == (1, money(60))


async def test_an_event_tying_two_customers_merges_them_into_the_older_with_full_history(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    t = tenant.tenant_id
    await profile.feed(
        [event(t, "m1", kind="identify", traits={"email": "Li.Wei@Example.com"}), order(t, "m1", "m1-o1", "120")]
    )
    profile.clock.advance(timedelta(minutes=5))
    await profile.feed(
        [
            event(t, "m2", kind="identify", traits={"phone": "138 0013 8000"}, at=EPOCH + timedelta(minutes=5)),
            order(t, "m2", "m2-o1", "80", at=EPOCH + timedelta(minutes=6)),
        ]
    )
    older = await profile.customer(t, "m1")
    younger = await profile.customer(t, "m2")
    assert older and younger and older.customer_id != younger.customer_id
    # A later anonymous visit names both the e-mail of one and the phone of the other.
    await profile.feed(
        [
            event(
                t,
                None,
                kind="identify",
                anonymous_id="anon-9",
                at=EPOCH + timedelta(hours=1),
                traits={"email": "li.wei@example.com", "phone": "+86 13800138000"},
            )
        ]
    )
    merged = await profile.customer(t, "m2")
    assert merged is not None and merged.customer_id == older.customer_id
    assert (merged.orders_count, merged.revenue_total) == (2, money(200))
    assert merged.phone == "+8613800138000" and merged.email == "li.wei@example.com"
    async with profile.sessions() as session:
        redirect = (
            await session.execute(
                text(
                    "SELECT customer_id FROM profile.identities WHERE tenant_id = :t AND kind = 'merged_customer_id' "
                    "AND value = :old"
                ),
                {"t": t, "old": younger.customer_id},
            )
        ).scalar_one()
        left = (
            await session.execute(text("SELECT count(*) FROM profile.customers WHERE tenant_id = :t"), {"t": t})
        ).scalar_one()
    assert redirect == older.customer_id
    assert left == 1


async def test_stages_move_with_time_through_the_sweep(profile: ProfileHarness, tenant: TenantCredentials) -> None:
    t = tenant.tenant_id
    await profile.feed([order(t, "s1", "s1-o1", "10")])
    customer = await profile.customer(t, "s1")
    assert customer and customer.lifecycle_stage == "new"
    assert customer.next_stage_at == EPOCH + timedelta(days=30)
    sweep = LifecycleSweep(profile.sessions, profile.clock, tenant_id=t)
    profile.clock.advance(timedelta(days=29))
    assert await sweep() == 0
    profile.clock.advance(timedelta(days=2))
    assert await sweep() == 1
    customer = await profile.customer(t, "s1")
    assert customer and (customer.lifecycle_stage, customer.next_stage_at) == ("silent", EPOCH + timedelta(days=90))
    profile.clock.advance(timedelta(days=200))
    assert await sweep() == 1
    customer = await profile.customer(t, "s1")
    assert customer and (customer.lifecycle_stage, customer.next_stage_at) == ("churned", None)
    # A new order brings them back: two orders now, so active.
    await profile.feed([order(t, "s1", "s1-o2", "10", at=EPOCH + timedelta(days=231))])
    customer = await profile.customer(t, "s1")
    assert customer and customer.lifecycle_stage == "active"


async def test_rfm_quintiles_and_named_segments(profile: ProfileHarness, tenant: TenantCredentials) -> None:
    t = tenant.tenant_id
    stream = []
    for i in range(25):  # customer i: i+1 orders, bigger spend and more recent as i grows
        for n in range(i + 1):
            stream.append(
                order(t, f"c{i:02d}", f"c{i}-o{n}", 10 * (i + 1), at=EPOCH - timedelta(days=300 - 10 * i, hours=n))
            )
    await profile.feed(stream, batch=100)
    async with profile.sessions() as session, session.begin():
        changed = await recompute_rfm(session, t)
    assert len(changed) == 25
    customers = {c.user_id: c for c in await profile.customers(t)}
    assert [customers[f"c{i:02d}"].rfm_r for i in range(0, 25, 5)] == [1, 2, 3, 4, 5]
    best, worst = customers["c24"], customers["c00"]
    assert (best.rfm_r, best.rfm_f, best.rfm_m, best.rfm_segment) == (5, 5, 5, "champions")
    assert (worst.rfm_r, worst.rfm_f, worst.rfm_m, worst.rfm_segment) == (1, 1, 1, "lost")
    for c in customers.values():
        assert c.rfm_segment == segment_of(c.rfm_r, c.rfm_f, c.rfm_m)


async def test_a_customers_summary_in_memory_is_the_tenant_fits_summary(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    """Per-order scoring summarises one customer's orders in Python (``summarise_orders``); the tenant-wide fit
    summarises everyone in SQL. Random histories (several orders a day, days that start at different hours east and
    west of UTC, partial and full refunds, negative amounts) give both the same frequency, recency, T and monetary
    value, and the same customers (one with nothing left after refunds has no summary)."""
    rng = random.Random(4242)
    t = tenant.tenant_id
    histories: dict[str, list[OrderFact]] = {}
    rows = []
    for c in range(60):
        customer = f"cus_{c:04d}"
        histories[customer] = []
        for n in range(rng.choice([1, 1, 2, 3, 8])):
            amount = Decimal(rng.randint(-500, 99_999)) / 100
            refunded = rng.choice([Decimal(0), Decimal(0), amount, (amount / 3).quantize(Decimal("0.01"))])
            zone = timezone(timedelta(hours=rng.choice([-8, 0, 8])))
            at = (EPOCH - timedelta(days=rng.randint(0, 30), hours=rng.randint(0, 47))).astimezone(zone)
            histories[customer].append(OrderFact(amount, refunded, at))
            rows.append({"t": t, "o": f"{customer}-{n}", "c": customer, "a": amount, "r": refunded, "at": at})
    async with profile.sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO profile.orders (tenant_id, order_id, customer_id, amount, refunded_amount, currency, "
                "occurred_at, source_event_id) VALUES (:t, :o, :c, :a, :r, 'CNY', :at, :o)"
            ),
            rows,
        )
    now = EPOCH + timedelta(hours=5, minutes=7, seconds=3)
    async with profile.sessions() as session:
        in_sql = await summaries(session, t, now)
    in_memory = summarise_orders(histories, now)
    assert 0 < len(in_memory) < 60  # some customers have nothing left after refunds
    assert list(in_memory.customer_id) == sorted(in_sql.customer_id, key=list(histories).index)
    order_of = {c: n for n, c in enumerate(in_sql.customer_id)}
    at = [order_of[c] for c in in_memory.customer_id]
    assert list(in_memory.frequency) == list(in_sql.frequency[at])
    assert list(in_memory.recency) == list(in_sql.recency[at])
    assert in_memory.T == pytest.approx(in_sql.T[at], rel=1e-12)
    assert in_memory.monetary_value == pytest.approx(in_sql.monetary_value[at], rel=1e-12)


async def test_a_refit_scores_everyone_and_the_next_order_scores_that_customer_with_the_fit(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    """``refresh_tenant_value`` (the schedule's and ``POST /v1/value/refresh``'s job) fits the tenant's history,
    stores the parameters and scores every buyer; an order after it re-scores its customer with those parameters,
    from the same summary the fit used (so a customer whose order changed nothing of the summary keeps the score)."""
    rng = random.Random(77)
    t = tenant.tenant_id
    stream = []
    for c in range(40):
        for n in range(rng.choice([1, 1, 2, 4, 7])):
            at = EPOCH - timedelta(days=rng.randint(1, 300), hours=rng.randint(0, 23))
            stream.append(order(t, f"v{c:02d}", f"v{c}-o{n}", rng.randint(20, 900), at=at))
    await profile.feed(stream, batch=100)
    async with profile.sessions() as session, session.begin():
        session.add(
            SegmentRow(tenant_id=t, segment_id="dt", name="DT", rule={"field": "tier", "op": "eq", "value": "dt"})
        )
    async with profile.sessions() as session, session.begin():
        report = await refresh_tenant_value(session, t, EPOCH)
    assert report.customers_fitted == 40 and report.bgnbd is not None and report.gamma_gamma is not None
    scored = {c.user_id: c for c in await profile.customers(t)}
    assert all(c.clv is not None and c.clv >= 0 and 0 <= (c.probability_alive or 0) <= 1 for c in scored.values())
    # the tiers the refresh moved bring their customers into a segment on tier at once, with no event of theirs
    top = {c.customer_id for c in scored.values() if c.tier == "dt"}
    assert top and await members(profile, t, "dt") == top
    entered = await profile.outbox_changes(t, "segment.entered")
    assert {e["customer_id"] for e in entered if e["segment_id"] == "dt"} == top
    before = scored["v00"]
    first_day = min(m.occurred_at for m in stream if m.user_id == "v00").replace(hour=0, minute=0, second=0)
    # a second order on the customer's first day: the summary, and so the score, stay as the fit left them
    await profile.feed([order(t, "v00", "v00-same-day", "15", at=first_day + timedelta(minutes=1))])
    after = await profile.customer(t, "v00")
    assert after is not None and after.orders_count == before.orders_count + 1
    assert (after.clv, after.expected_purchases) == (before.clv, pytest.approx(before.expected_purchases, rel=1e-12))
    # a repeat purchase today raises what they are expected to buy
    await profile.feed([order(t, "v00", "v00-today", "15", at=EPOCH - timedelta(hours=1))])
    again = await profile.customer(t, "v00")
    assert again is not None and (again.expected_purchases or 0) > (before.expected_purchases or 0)


async def members(profile: ProfileHarness, tenant_id: str, segment_id: str) -> set[str]:
    async with profile.sessions() as session:
        rows = await session.execute(
            text("SELECT customer_id FROM profile.segment_members WHERE tenant_id = :t AND segment_id = :s"),
            {"t": tenant_id, "s": segment_id},
        )
        return set(rows.scalars())
