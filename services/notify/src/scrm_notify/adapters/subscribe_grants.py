"""One-time subscribe consents in the notify schema: grants per (tenant, customer, WeChat template) and the holds
of touches claimed against them.

A grant is held when a touch is claimed for sending (the customer row is locked then, so two touches never hold
the same grant), spent in the transaction that records the send as sent, released when the touch ends without
a send, and kept while it waits to be retried. ``available`` = unspent minus the holds of other touches.
A gate locks the grant rows before it reads the holds, and a settle deletes a hold and spends its grant in one
transaction (the grant update waits for the gate's lock): a gate sees either both or neither, so it never counts
a grant that is being spent. At worst it sees a hold that is being released and suppresses conservatively.
"""

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Text, bindparam, delete, func, select, tuple_, update
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_notify.adapters.orm import SubscribeGrantRow, SubscribeHoldRow
from scrm_notify.domain.subscribe import ACCEPT

Pair = tuple[str, str]
grants = SubscribeGrantRow.__table__
holds = SubscribeHoldRow.__table__


def _pairs(name: str, left: object, right: object, pairs: Iterable[Pair]):  # type: ignore[no-untyped-def]
    unique = list(dict.fromkeys(pairs))
    return tuple_(left, right).in_(  # type: ignore[arg-type]
        select(
            func.unnest(bindparam(f"{name}_a", [a for a, _ in unique], type_=ARRAY(Text))),
            func.unnest(bindparam(f"{name}_b", [b for _, b in unique], type_=ARRAY(Text))),
        )
    )


@dataclass(slots=True)
class Grants:
    """The grants a batch of touches may use: available per customer and WeChat template, and which of the
    batch's own touches already held one (a retried touch)."""

    available: dict[Pair, dict[str, int]] = field(default_factory=lambda: defaultdict(dict))
    held_by_batch: set[Pair] = field(default_factory=set)
    new_holds: list[dict[str, object]] = field(default_factory=list)

    def left(self, customer: Pair, wechat_template: str) -> int:
        return self.available.get(customer, {}).get(wechat_template, 0)

    def hold(self, customer: Pair, touch_key: str, wechat_template: str, now: datetime) -> None:
        """Set one grant aside for this touch (seen by the customer's next touches in the batch)."""
        self.available[customer][wechat_template] = self.left(customer, wechat_template) - 1
        tenant_id, customer_id = customer
        self.new_holds.append(
            {
                "tenant_id": tenant_id,
                "touch_key": touch_key,
                "customer_id": customer_id,
                "wechat_template_id": wechat_template,
                "created_at": now,
            }
        )


async def load(session: AsyncSession, customers: Sequence[Pair], batch: set[Pair]) -> Grants:
    """Lock the customers' grant rows (key order) and subtract the holds of touches outside ``batch``."""
    found = Grants()
    if not customers:
        return found
    rows = await session.execute(
        select(grants.c.tenant_id, grants.c.customer_id, grants.c.wechat_template_id, grants.c.unspent)
        .where(_pairs("grant_customers", grants.c.tenant_id, grants.c.customer_id, customers), grants.c.unspent > 0)
        .order_by(grants.c.tenant_id, grants.c.customer_id, grants.c.wechat_template_id)
        .with_for_update()
    )
    for tenant_id, customer_id, wechat_template, unspent in rows:
        found.available[(tenant_id, customer_id)][wechat_template] = unspent
    held = await session.execute(
        select(holds.c.tenant_id, holds.c.customer_id, holds.c.touch_key, holds.c.wechat_template_id).where(
            _pairs("hold_customers", holds.c.tenant_id, holds.c.customer_id, customers)
        )
    )
    for tenant_id, customer_id, touch_key, wechat_template in held:
        if (tenant_id, touch_key) in batch:
            found.held_by_batch.add((tenant_id, touch_key))
        else:
            customer = (tenant_id, customer_id)
            found.available[customer][wechat_template] = found.left(customer, wechat_template) - 1
    return found


async def write_holds(session: AsyncSession, found: Grants) -> None:
    """Replace the batch's holds: the ones its touches held before go, the ones claimed now are written."""
    if found.held_by_batch:
        await session.execute(
            delete(SubscribeHoldRow).where(
                _pairs("released", SubscribeHoldRow.tenant_id, SubscribeHoldRow.touch_key, found.held_by_batch)
            )
        )
    if found.new_holds:
        await session.execute(insert(SubscribeHoldRow).values(found.new_holds).on_conflict_do_nothing())


async def answer(
    session: AsyncSession, tenant_id: str, customer_id: str, wechat_template: str, status: str, at: datetime
) -> None:
    """Apply the customer's answer to a prompt: ``accept`` adds a grant (unless a later clear covers it); any
    other status clears them (unless an accept newer than it was already counted)."""
    values = {
        "tenant_id": tenant_id,
        "customer_id": customer_id,
        "wechat_template_id": wechat_template,
        "last_status": status,
        "answered_at": at,
        "updated_at": func.now(),
    }
    stmt = insert(SubscribeGrantRow)
    row = SubscribeGrantRow
    if status == ACCEPT:
        stmt = stmt.values(unspent=1, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[row.tenant_id, row.customer_id, row.wechat_template_id],
            set_={
                "unspent": row.unspent + 1,
                "last_status": status,
                "answered_at": func.greatest(row.answered_at, at),
                "updated_at": func.now(),
            },
            where=row.cleared_at.is_(None) | (row.cleared_at < at),
        )
    else:
        stmt = stmt.values(unspent=0, cleared_at=at, **values)
        stmt = stmt.on_conflict_do_update(
            index_elements=[row.tenant_id, row.customer_id, row.wechat_template_id],
            set_={
                "unspent": 0,
                "last_status": status,
                "answered_at": at,
                "cleared_at": func.greatest(row.cleared_at, at),
                "updated_at": func.now(),
            },
            where=row.answered_at <= at,
        )
    await session.execute(stmt)


async def settle(
    session: AsyncSession, spent: Sequence[Pair], released: Sequence[Pair], used_up: Sequence[Pair], now: datetime
) -> None:
    """Spend the holds of touches sent, release those of touches that ended unsent, and clear the grants WeChat
    said are used up (43101). A touch without a hold (already settled) spends nothing."""
    row = SubscribeGrantRow
    if spent:
        taken = await session.execute(
            delete(SubscribeHoldRow)
            .where(_pairs("spent", SubscribeHoldRow.tenant_id, SubscribeHoldRow.touch_key, spent))
            .returning(SubscribeHoldRow.tenant_id, SubscribeHoldRow.customer_id, SubscribeHoldRow.wechat_template_id)
        )
        for tenant_id, customer_id, wechat_template in sorted(taken.all()):
            await session.execute(
                update(row)
                .where(
                    row.tenant_id == tenant_id,
                    row.customer_id == customer_id,
                    row.wechat_template_id == wechat_template,
                )
                .values(unspent=func.greatest(row.unspent - 1, 0), updated_at=now)
            )
    if released or used_up:
        gone = await session.execute(
            delete(SubscribeHoldRow)
            .where(_pairs("released", SubscribeHoldRow.tenant_id, SubscribeHoldRow.touch_key, [*released, *used_up]))
            .returning(
                SubscribeHoldRow.tenant_id,
                SubscribeHoldRow.touch_key,
                SubscribeHoldRow.customer_id,
                SubscribeHoldRow.wechat_template_id,
            )
        )
        refused = set(used_up)
        for tenant_id, touch_key, customer_id, wechat_template in sorted(gone.all()):
            if (tenant_id, touch_key) in refused:
                await answer(session, tenant_id, customer_id, wechat_template, "used_up", now)


async def of_customer(session: AsyncSession, tenant_id: str, customer_id: str) -> list[SubscribeGrantRow]:
    rows = await session.execute(
        select(SubscribeGrantRow)
        .where(SubscribeGrantRow.tenant_id == tenant_id, SubscribeGrantRow.customer_id == customer_id)
        .order_by(SubscribeGrantRow.wechat_template_id)
    )
    return list(rows.scalars())


async def held_count(session: AsyncSession, tenant_id: str, customer_id: str) -> dict[str, int]:
    rows = await session.execute(
        select(SubscribeHoldRow.wechat_template_id, func.count())
        .where(SubscribeHoldRow.tenant_id == tenant_id, SubscribeHoldRow.customer_id == customer_id)
        .group_by(SubscribeHoldRow.wechat_template_id)
    )
    return {template: int(count) for template, count in rows}


async def merge(session: AsyncSession, tenant_id: str, survivor: str, merged: str) -> None:
    """Move a merged customer's grants (added to the survivor's) and holds to the survivor."""
    row = SubscribeGrantRow
    moved = (
        await session.execute(
            delete(row)
            .where(row.tenant_id == tenant_id, row.customer_id == merged)
            .returning(row.wechat_template_id, row.unspent, row.last_status, row.answered_at, row.cleared_at)
        )
    ).all()
    for wechat_template, unspent, last_status, answered_at, cleared_at in moved:
        stmt = insert(row).values(
            tenant_id=tenant_id,
            customer_id=survivor,
            wechat_template_id=wechat_template,
            unspent=unspent,
            last_status=last_status,
            answered_at=answered_at,
            cleared_at=cleared_at,
            updated_at=func.now(),
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[row.tenant_id, row.customer_id, row.wechat_template_id],
                set_={"unspent": row.unspent + stmt.excluded.unspent, "updated_at": func.now()},
            )
        )
    await session.execute(
        update(SubscribeHoldRow)
        .where(SubscribeHoldRow.tenant_id == tenant_id, SubscribeHoldRow.customer_id == merged)
        .values(customer_id=survivor)
    )


async def holding(session: AsyncSession, keys: Sequence[Pair]) -> set[Pair]:
    """The touches among ``keys`` that hold a grant (subscribe messages claimed for sending)."""
    if not keys:
        return set()
    rows = await session.execute(
        select(SubscribeHoldRow.tenant_id, SubscribeHoldRow.touch_key).where(
            _pairs("holding", SubscribeHoldRow.tenant_id, SubscribeHoldRow.touch_key, keys)
        )
    )
    return {(tenant_id, touch_key) for tenant_id, touch_key in rows}
