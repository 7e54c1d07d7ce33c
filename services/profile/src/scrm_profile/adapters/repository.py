"""Profile persistence: customers, orders and touches, scoped by tenant in every query."""

import secrets
from decimal import Decimal

from sqlalchemy import func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_profile.adapters.orm import CustomerRow, OrderRow, TouchRow
from scrm_profile.domain.customers import Aggregates, OrderFact


def new_customer_id() -> str:
    return f"cus_{secrets.token_hex(10)}"


async def customer_for_user(
    session: AsyncSession, tenant_id: str, user_id: str | None, anonymous_id: str | None
) -> CustomerRow:
    """The customer known by this user id (else anonymous id), created as a prospect if new."""
    await session.execute(
        insert(CustomerRow)
        .values(
            tenant_id=tenant_id,
            customer_id=new_customer_id(),
            user_id=user_id,
            anonymous_id=None if user_id else anonymous_id,
            lifecycle_stage="prospect",
            orders_count=0,
            revenue_total=Decimal("0"),
        )
        .on_conflict_do_nothing()
    )
    query = select(CustomerRow).where(CustomerRow.tenant_id == tenant_id)
    if user_id:
        query = query.where(CustomerRow.user_id == user_id)
    else:
        query = query.where(CustomerRow.anonymous_id == anonymous_id)
    return (await session.execute(query.with_for_update())).scalar_one()


async def add_order(session: AsyncSession, order: OrderRow) -> bool:
    """Store an order once; False if this order id was already recorded for the tenant."""
    values = {c.key: getattr(order, c.key) for c in OrderRow.__table__.columns if getattr(order, c.key) is not None}
    stmt = insert(OrderRow).values(**values).on_conflict_do_nothing().returning(OrderRow.order_id)
    result = await session.execute(stmt)
    return result.first() is not None


async def refund_order(session: AsyncSession, tenant_id: str, order_id: str, amount: Decimal | None) -> str | None:
    """Add a refund to an order (full when ``amount`` is None); returns the order's customer id, if known."""
    order = (
        await session.execute(
            select(OrderRow).where(OrderRow.tenant_id == tenant_id, OrderRow.order_id == order_id).with_for_update()
        )
    ).scalar_one_or_none()
    if order is None:
        return None
    refunded = order.amount if amount is None else min(order.amount, order.refunded_amount + amount)
    await session.execute(
        update(OrderRow)
        .where(OrderRow.tenant_id == tenant_id, OrderRow.order_id == order_id)
        .values(refunded_amount=refunded)
    )
    return order.customer_id


async def order_facts(session: AsyncSession, tenant_id: str, customer_id: str) -> list[OrderFact]:
    rows = await session.execute(
        select(OrderRow.amount, OrderRow.refunded_amount, OrderRow.occurred_at).where(
            OrderRow.tenant_id == tenant_id, OrderRow.customer_id == customer_id
        )
    )
    return [OrderFact(r.amount, r.refunded_amount, r.occurred_at) for r in rows]


async def save_aggregates(session: AsyncSession, customer: CustomerRow, aggregates: Aggregates, stage: str) -> None:
    await session.execute(
        update(CustomerRow)
        .where(CustomerRow.tenant_id == customer.tenant_id, CustomerRow.customer_id == customer.customer_id)
        .values(
            orders_count=aggregates.orders_count,
            revenue_total=aggregates.revenue_total,
            first_order_at=aggregates.first_order_at,
            last_order_at=aggregates.last_order_at,
            lifecycle_stage=stage,
            updated_at=func.now(),
        )
    )


async def add_touch(session: AsyncSession, touch: TouchRow) -> None:
    values = {c.key: getattr(touch, c.key) for c in TouchRow.__table__.columns}
    await session.execute(insert(TouchRow).values(**values).on_conflict_do_nothing())


async def find_customer(session: AsyncSession, tenant_id: str, ref: str) -> CustomerRow | None:
    """A customer by reference: ``cus_...`` (our id), ``user_id:<shop user id>`` or ``anonymous_id:<id>``."""
    query = select(CustomerRow).where(CustomerRow.tenant_id == tenant_id)
    kind, _, value = ref.partition(":")
    if ref.startswith("cus_"):
        query = query.where(CustomerRow.customer_id == ref)
    elif kind == "user_id" and value:
        query = query.where(CustomerRow.user_id == value)
    elif kind == "anonymous_id" and value:
        query = query.where(CustomerRow.anonymous_id == value)
    else:
        return None
    return (await session.execute(query)).scalar_one_or_none()


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
