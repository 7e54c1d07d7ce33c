"""Profile persistence: customers, orders, refunds, events and touches, scoped by tenant in every query."""

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import OrderRefundedProperties, SemanticEvent, TrackedEvent
from scrm_profile.adapters.orm import (
    CustomerRow,
    EventRow,
    IdentityRow,
    OrderRow,
    RefundRow,
    TenantSettingsRow,
    TouchRow,
)
from scrm_profile.domain.customers import Aggregates, OrderFact, aggregate
from scrm_profile.domain.identity import IDENTITY_KINDS, MERGED_KIND, normalise
from scrm_profile.domain.lifecycle import stage_at
from scrm_profile.domain.settings import ProfileSettings


async def tenant_settings(session: AsyncSession, tenant_id: str) -> ProfileSettings:
    row = await session.get(TenantSettingsRow, tenant_id)
    return ProfileSettings.model_validate(row.settings) if row and row.settings else ProfileSettings()


async def save_tenant_settings(session: AsyncSession, tenant_id: str, settings: ProfileSettings) -> None:
    await session.execute(
        insert(TenantSettingsRow)
        .values(tenant_id=tenant_id, settings=settings.model_dump())
        .on_conflict_do_update(
            index_elements=[TenantSettingsRow.tenant_id],
            set_={"settings": settings.model_dump(), "updated_at": func.now()},
        )
    )


async def lock_customer(session: AsyncSession, tenant_id: str, customer_id: str) -> CustomerRow | None:
    return (
        await session.execute(
            select(CustomerRow)
            .where(CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id == customer_id)
            .with_for_update()
        )
    ).scalar_one_or_none()


async def add_order(session: AsyncSession, order: OrderRow) -> bool:
    """Store an order once; False if this order id was already recorded for the tenant."""
    values = {c.key: getattr(order, c.key) for c in OrderRow.__table__.columns}
    stmt = insert(OrderRow).values(**values).on_conflict_do_nothing().returning(OrderRow.order_id)
    return (await session.execute(stmt)).first() is not None


async def add_refund(session: AsyncSession, event: TrackedEvent, refund: OrderRefundedProperties) -> None:
    await session.execute(
        insert(RefundRow)
        .values(
            tenant_id=event.tenant_id,
            event_id=event.event_id,
            order_id=refund.order_id,
            amount=refund.total,
            occurred_at=event.occurred_at,
        )
        .on_conflict_do_nothing()
    )


async def apply_refunds(session: AsyncSession, tenant_id: str, order_id: str) -> str | None:
    """Set an order's refunded amount from every refund recorded for it (a full refund when no amount is given);
    returns the order's customer id, or None while the order has not arrived."""
    row = (
        await session.execute(
            text(
                """
                UPDATE profile.orders o SET refunded_amount = LEAST(o.amount, COALESCE((
                    SELECT CASE WHEN bool_or(r.amount IS NULL) THEN o.amount ELSE sum(r.amount) END
                    FROM profile.refunds r WHERE r.tenant_id = o.tenant_id AND r.order_id = o.order_id), 0))
                WHERE o.tenant_id = :tenant AND o.order_id = :order
                RETURNING o.customer_id
                """
            ),
            {"tenant": tenant_id, "order": order_id},
        )
    ).first()
    return row.customer_id if row else None


async def order_facts(session: AsyncSession, tenant_id: str, customer_id: str) -> list[OrderFact]:
    rows = await session.execute(
        select(OrderRow.amount, OrderRow.refunded_amount, OrderRow.occurred_at).where(
            OrderRow.tenant_id == tenant_id, OrderRow.customer_id == customer_id
        )
    )
    return [OrderFact(r.amount, r.refunded_amount, r.occurred_at) for r in rows]


async def refresh_aggregates(session: AsyncSession, customer: CustomerRow) -> Aggregates:
    """Recompute a customer's aggregates from their stored orders (exact whatever the arrival order)."""
    result = aggregate(await order_facts(session, customer.tenant_id, customer.customer_id))
    customer.orders_count = result.orders_count
    customer.revenue_total = result.revenue_total
    customer.first_order_at = result.first_order_at
    customer.last_order_at = result.last_order_at
    customer.avg_interval_days = result.avg_interval_days
    return result


def restage(customer: CustomerRow, settings: ProfileSettings, now: datetime) -> None:
    """Set the lifecycle stage at ``now`` and when it next changes by time alone."""
    stage, next_at = stage_at(
        customer.orders_count or 0, customer.last_order_at, customer.avg_interval_days, now, settings.thresholds
    )
    customer.lifecycle_stage = stage
    customer.next_stage_at = next_at


async def add_event(session: AsyncSession, customer: CustomerRow, event: TrackedEvent) -> bool:
    """Store a track event on the customer's timeline; False if it was stored before."""
    stored = await session.execute(
        insert(EventRow)
        .values(
            tenant_id=event.tenant_id,
            event_id=event.event_id,
            customer_id=customer.customer_id,
            event=event.event,
            occurred_at=event.occurred_at,
            properties=event.properties,
        )
        .on_conflict_do_nothing()
        .returning(EventRow.event_id)
    )
    return stored.first() is not None


async def stored_value_balance(session: AsyncSession, tenant_id: str, customer_id: str) -> Decimal:
    """Top-ups minus spends over the stored events (exact under late and out-of-order events)."""
    topped, spent = SemanticEvent.STORED_VALUE_TOPPED_UP.value, SemanticEvent.STORED_VALUE_SPENT.value
    row = (
        await session.execute(
            text(
                """
                SELECT COALESCE(sum(CASE WHEN event = :topped THEN (properties->>'amount')::numeric
                                         ELSE -(properties->>'amount')::numeric END), 0) AS balance
                FROM profile.events
                WHERE tenant_id = :tenant AND customer_id = :customer AND event IN (:topped, :spent)
                """
            ),
            {"tenant": tenant_id, "customer": customer_id, "topped": topped, "spent": spent},
        )
    ).one()
    return Decimal(row.balance)


async def add_touch(session: AsyncSession, touch: TouchRow) -> str | None:
    """Put a touch outcome on its customer's timeline and return whose it is: a merged-away customer's goes to the
    survivor; one for a customer who is gone (erased while the touch was in flight) is dropped, since erasure must
    leave nothing behind."""
    tenant_id, customer_id = touch.tenant_id, touch.customer_id
    survivor = select(IdentityRow.customer_id).where(
        IdentityRow.tenant_id == tenant_id, IdentityRow.kind == MERGED_KIND, IdentityRow.value == customer_id
    )
    exists = select(CustomerRow.customer_id).where(
        CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id == customer_id
    )
    owner = (
        await session.execute(select(func.coalesce(exists.scalar_subquery(), survivor.scalar_subquery())))
    ).scalar_one_or_none()
    if owner is None:
        return None
    touch.customer_id = owner
    values = {c.key: getattr(touch, c.key) for c in TouchRow.__table__.columns}
    await session.execute(insert(TouchRow).values(**values).on_conflict_do_nothing())
    return owner


REF_KINDS = {
    **{k: k for k in IDENTITY_KINDS},
    "wecom": "wecom_external_userid",
    "unionid": "wechat_unionid",
    "openid": "wechat_openid",
}


async def find_customer(session: AsyncSession, tenant_id: str, ref: str, region: str = "CN") -> CustomerRow | None:
    """A customer by reference: ``cus_...`` (our id, merged ids follow their survivor) or ``<kind>:<value>`` with
    kind one of user_id, anonymous_id, phone, email, wecom, unionid, openid."""
    if ref.startswith("cus_"):
        found = await session.get(CustomerRow, (tenant_id, ref))
        if found is not None:
            return found
        kind, value = MERGED_KIND, ref
    else:
        prefix, _, raw = ref.partition(":")
        kind = REF_KINDS.get(prefix, "")
        value = normalise(kind, raw, region) if kind else None
        if not kind or value is None:
            return None
    owner = (
        await session.execute(
            select(IdentityRow.customer_id).where(
                IdentityRow.tenant_id == tenant_id, IdentityRow.kind == kind, IdentityRow.value == value
            )
        )
    ).scalar_one_or_none()
    return await session.get(CustomerRow, (tenant_id, owner)) if owner else None


async def recent_touches(session: AsyncSession, tenant_id: str, customer_id: str, limit: int = 50) -> list[TouchRow]:
    rows = await session.execute(
        select(TouchRow)
        .where(TouchRow.tenant_id == tenant_id, TouchRow.customer_id == customer_id)
        .order_by(TouchRow.occurred_at.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def recent_orders(session: AsyncSession, tenant_id: str, customer_id: str, limit: int = 50) -> list[OrderRow]:
    rows = await session.execute(
        select(OrderRow)
        .where(OrderRow.tenant_id == tenant_id, OrderRow.customer_id == customer_id)
        .order_by(OrderRow.occurred_at.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def recent_events(session: AsyncSession, tenant_id: str, customer_id: str, limit: int = 50) -> list[EventRow]:
    rows = await session.execute(
        select(EventRow)
        .where(EventRow.tenant_id == tenant_id, EventRow.customer_id == customer_id)
        .order_by(EventRow.occurred_at.desc())
        .limit(limit)
    )
    return list(rows.scalars())


async def identities_of(session: AsyncSession, tenant_id: str, customer_id: str) -> list[IdentityRow]:
    rows = await session.execute(
        select(IdentityRow).where(IdentityRow.tenant_id == tenant_id, IdentityRow.customer_id == customer_id)
    )
    return list(rows.scalars())
