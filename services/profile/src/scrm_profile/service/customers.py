"""Operator actions on customers: manual tags, erasure (PIPL) and staff handover (离职继承)."""

from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import CustomerErased, OwnerChanged
from scrm_kit.errors import InvalidInput, NotFound
from scrm_kit.outbox import enqueue
from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.orm import (
    AuditRow,
    CustomerRow,
    EventRow,
    IdentityRow,
    OrderRow,
    RefundRow,
    SegmentMemberRow,
    TouchRow,
    outbox,
)
from scrm_profile.service.consume import EventWork
from scrm_profile.service.snapshots import records


def _clean_tags(tags: list[str], field: str) -> list[str]:
    cleaned = [t.strip() for t in tags]
    for tag in cleaned:
        if not tag or len(tag) > 100:
            raise InvalidInput("tags must be 1-100 characters", field=field)
    return cleaned


async def change_tags(
    session: AsyncSession, customer_id: str, tenant_id: str, add: list[str], remove: list[str], now: datetime
) -> CustomerRow:
    customer = await repo.lock_customer(session, tenant_id, customer_id)
    if customer is None:
        raise NotFound(f"no customer {customer_id!r} in this tenant")
    tags = (set(customer.tags or []) | set(_clean_tags(add, "add"))) - set(_clean_tags(remove, "remove"))
    if tags != set(customer.tags or []):
        customer.tags = sorted(tags)
        await EventWork(session, now).finish(customer, [], f"tags:{customer.version}", value_changed=False)
    return customer


async def erase(session: AsyncSession, customer: CustomerRow, now: datetime) -> None:
    """Remove every row about this person; keep only an audit line naming the (random) customer id."""
    tenant, cid = customer.tenant_id, customer.customer_id
    order_ids = select(OrderRow.order_id).where(OrderRow.tenant_id == tenant, OrderRow.customer_id == cid)
    await session.execute(delete(RefundRow).where(RefundRow.tenant_id == tenant, RefundRow.order_id.in_(order_ids)))
    for table in (OrderRow, EventRow, TouchRow, IdentityRow, SegmentMemberRow):
        await session.execute(delete(table).where(table.tenant_id == tenant, table.customer_id == cid))
    await session.delete(customer)
    session.add(AuditRow(tenant_id=tenant, action="customer.erased", detail={"customer_id": cid}))
    await enqueue(
        session,
        outbox,
        records(
            [
                CustomerErased(
                    event_id=f"erased:{cid}",
                    tenant_id=tenant,
                    customer_id=cid,
                    occurred_at=now,
                )
            ]
        ),
    )


async def handover(
    session: AsyncSession, tenant_id: str, from_staff: str, to_staff: str, store_id: str | None, now: datetime
) -> int:
    """Reassign every customer of a departing staff member, audited; each change is published."""
    if from_staff == to_staff:
        raise InvalidInput("must differ from the departing staff member", field="to_staff_id")
    moved = (
        (
            await session.execute(
                update(CustomerRow)
                .where(CustomerRow.tenant_id == tenant_id, CustomerRow.owner_staff_id == from_staff)
                .values(owner_staff_id=to_staff, store_id=store_id or CustomerRow.store_id)
                .returning(CustomerRow.customer_id)
            )
        )
        .scalars()
        .all()
    )
    work = EventWork(session, now)
    cause = f"handover:{from_staff}:{to_staff}:{now.isoformat()}"
    for start in range(0, len(moved), 500):
        rows = (
            (
                await session.execute(
                    select(CustomerRow).where(
                        CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id.in_(moved[start : start + 500])
                    )
                )
            )
            .scalars()
            .all()
        )
        for customer in rows:
            change = OwnerChanged(
                event_id=f"owner:{customer.customer_id}:{cause}",
                tenant_id=tenant_id,
                customer_id=customer.customer_id,
                user_id=customer.user_id,
                occurred_at=now,
                from_staff_id=from_staff,
                to_staff_id=to_staff,
                store_id=customer.store_id,
                reason="handover",
            )
            await work.finish(customer, [change], cause, value_changed=False)
    session.add(
        AuditRow(
            tenant_id=tenant_id,
            action="staff.handover",
            detail={"from_staff_id": from_staff, "to_staff_id": to_staff, "customers": len(moved)},
        )
    )
    return len(moved)
