"""Identity resolution in the database: find, create and merge customers by any of their identifiers."""

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import delete, select, tuple_, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_profile.adapters.orm import (
    AuditRow,
    CustomerRow,
    EventRow,
    IdentityRow,
    OrderRow,
    SegmentMemberRow,
    TouchRow,
)
from scrm_profile.domain.identity import MERGED_KIND, survivor

CONSENT_RANK = {"unsubscribed": 2, "subscribed": 1, "unknown": 0}


def new_customer_id() -> str:
    return f"cus_{secrets.token_hex(10)}"


@dataclass
class Resolution:
    customer: CustomerRow
    created: bool = False
    merged_ids: list[str] = field(default_factory=list)


async def resolve(
    session: AsyncSession, tenant_id: str, identifiers: Sequence[tuple[str, str]], now: datetime
) -> Resolution:
    """The one customer these identifiers name; creates it if none does, merges them if several do."""
    rows = (
        (
            await session.execute(
                select(IdentityRow.customer_id)
                .where(IdentityRow.tenant_id == tenant_id, tuple_(IdentityRow.kind, IdentityRow.value).in_(identifiers))
                .distinct()
            )
        )
        .scalars()
        .all()
    )
    customers = (
        (
            await session.execute(
                select(CustomerRow)
                .where(CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id.in_(rows))
                .with_for_update()
            )
        )
        .scalars()
        .all()
        if rows
        else []
    )
    if not customers:
        customer = await _create(session, tenant_id, identifiers, now)
        return Resolution(customer, created=True)
    keep_id = survivor((c.customer_id, c.created_at) for c in customers)
    keep = next(c for c in customers if c.customer_id == keep_id)
    losers = [c for c in customers if c.customer_id != keep_id]
    for loser in losers:
        await merge_into(session, keep, loser)
    await attach(session, tenant_id, keep.customer_id, identifiers)
    return Resolution(keep, merged_ids=[c.customer_id for c in losers])


async def _create(
    session: AsyncSession, tenant_id: str, identifiers: Sequence[tuple[str, str]], now: datetime
) -> CustomerRow:
    ids = dict(identifiers)
    customer = CustomerRow(
        tenant_id=tenant_id,
        customer_id=new_customer_id(),
        user_id=ids.get("user_id"),
        anonymous_id=ids.get("anonymous_id"),
        lifecycle_stage="prospect",
        orders_count=0,
        revenue_total=0,
        traits={},
        tags=[],
        wecom_staff_ids=[],
        stored_value_balance=0,
        official_account_follower=False,
        sms_consent="unknown",
        email_consent="unknown",
        version=0,
        created_at=now,
        updated_at=now,
    )
    session.add(customer)
    await session.flush()
    await attach(session, tenant_id, customer.customer_id, identifiers)
    return customer


async def attach(
    session: AsyncSession, tenant_id: str, customer_id: str, identifiers: Sequence[tuple[str, str]]
) -> None:
    """Record identifiers as this customer's (an identifier already owned stays with its owner)."""
    if identifiers:
        await session.execute(
            insert(IdentityRow)
            .values(
                [{"tenant_id": tenant_id, "kind": k, "value": v, "customer_id": customer_id} for k, v in identifiers]
            )
            .on_conflict_do_nothing()
        )


async def merge_into(session: AsyncSession, keep: CustomerRow, loser: CustomerRow) -> None:
    """Fold ``loser`` into ``keep``: history moves over, identities follow, the old id redirects."""
    tenant, old, new = keep.tenant_id, loser.customer_id, keep.customer_id
    for table in (OrderRow, EventRow, TouchRow, IdentityRow):
        await session.execute(
            update(table).where(table.tenant_id == tenant, table.customer_id == old).values(customer_id=new)
        )
    await session.execute(
        delete(SegmentMemberRow).where(SegmentMemberRow.tenant_id == tenant, SegmentMemberRow.customer_id == old)
    )
    keep.user_id = keep.user_id or loser.user_id
    keep.anonymous_id = keep.anonymous_id or loser.anonymous_id
    for attr in (
        "name",
        "phone",
        "email",
        "birthday",
        "gender",
        "city",
        "timezone",
        "owner_staff_id",
        "store_id",
        "membership_level",
        "membership_started_at",
        "membership_expires_at",
        "last_engagement_at",
    ):
        if getattr(keep, attr) is None:
            setattr(keep, attr, getattr(loser, attr))
    keep.traits = {**(loser.traits or {}), **(keep.traits or {})}
    keep.tags = sorted(set(keep.tags or []) | set(loser.tags or []))
    keep.wecom_staff_ids = sorted(set(keep.wecom_staff_ids or []) | set(loser.wecom_staff_ids or []))
    keep.official_account_follower = keep.official_account_follower or loser.official_account_follower
    keep.sms_consent = max(keep.sms_consent, loser.sms_consent, key=CONSENT_RANK.__getitem__)
    keep.email_consent = max(keep.email_consent, loser.email_consent, key=CONSENT_RANK.__getitem__)
    keep.version = max(keep.version, loser.version)
    await session.delete(loser)
    await session.flush()
    await attach(session, tenant, new, [(MERGED_KIND, old)])
    session.add(AuditRow(tenant_id=tenant, action="customers.merged", detail={"survivor": new, "merged": old}))
