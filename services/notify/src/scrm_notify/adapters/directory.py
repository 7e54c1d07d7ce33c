"""The customer directory in the notify schema: snapshots, tombstones, aliases and explicit consents."""

from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import CustomerUpdated
from scrm_notify.adapters import subscribe_grants
from scrm_notify.adapters.orm import (
    ConsentRow,
    CustomerAliasRow,
    CustomerRow,
    ErasedCustomerRow,
    StaffTaskRow,
    SubscribeGrantRow,
    SubscribeHoldRow,
    TouchRow,
    WeComMassCheckRow,
    WeComQuotaHoldRow,
)
from scrm_notify.domain.consent import ConsentRecord, CustomerView

NEGATIVE = ("unsubscribed", "blocked")
# Touches recorded before notify knew the customer (a WeCom welcome) carry this id until their first snapshot.
PROVISIONAL_WECOM = "wecom:"


def _row_values(change: CustomerUpdated) -> dict[str, Any]:
    snap = change.snapshot
    locale = snap.traits.get("locale")
    return {
        "tenant_id": change.tenant_id,
        "customer_id": change.customer_id,
        "version": change.version,
        "snapshot_at": change.occurred_at,
        "lifecycle_stage": snap.lifecycle_stage,
        "tier": snap.tier,
        "owner_staff_id": snap.owner_staff_id,
        "timezone": snap.timezone,
        "locale": locale if isinstance(locale, str) else None,
        "phone": snap.contact.phone,
        "email": snap.contact.email,
        "wecom_external_userid": snap.contact.wecom_external_userid,
        "wechat_openid": snap.contact.wechat_openid,
        "wecom_staff_ids": list(snap.reachability.wecom_staff_ids),
        "official_account_follower": snap.reachability.official_account_follower,
        "sms_consent": snap.reachability.sms,
        "email_consent": snap.reachability.email,
        "variables": snap.model_dump(mode="json", exclude={"contact", "reachability"}),
    }


async def apply_snapshot(session: AsyncSession, change: CustomerUpdated) -> bool:
    """Store the snapshot if it is newer than what we hold and the customer was not erased."""
    erased = await session.get(ErasedCustomerRow, (change.tenant_id, change.customer_id))
    if erased is not None:
        return False
    values = _row_values(change)
    stmt = insert(CustomerRow).values(**values)
    stmt = stmt.on_conflict_do_update(
        index_elements=[CustomerRow.tenant_id, CustomerRow.customer_id],
        set_={k: stmt.excluded[k] for k in values if k not in ("tenant_id", "customer_id")},
        where=CustomerRow.version < stmt.excluded.version,
    ).returning(CustomerRow.customer_id)
    stored = (await session.execute(stmt)).first() is not None
    external_userid = values["wecom_external_userid"]
    if stored and external_userid:
        await session.execute(
            update(TouchRow)
            .where(TouchRow.tenant_id == change.tenant_id, TouchRow.customer_id == PROVISIONAL_WECOM + external_userid)
            .values(customer_id=change.customer_id)
        )
    return stored


async def erase(session: AsyncSession, tenant_id: str, customer_id: str, at: datetime) -> None:
    """Remove everything notify holds about the customer; keep only a tombstone without personal data."""
    external_userid = (
        await session.execute(
            select(CustomerRow.wecom_external_userid).where(
                CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id == customer_id
            )
        )
    ).scalar_one_or_none()
    if external_userid:
        await session.execute(
            delete(TouchRow).where(
                TouchRow.tenant_id == tenant_id, TouchRow.customer_id == PROVISIONAL_WECOM + external_userid
            )
        )
    for table, column in (
        (CustomerRow, CustomerRow.customer_id),
        (ConsentRow, ConsentRow.customer_id),
        (TouchRow, TouchRow.customer_id),
        (StaffTaskRow, StaffTaskRow.customer_id),
        (CustomerAliasRow, CustomerAliasRow.customer_id),
        (SubscribeGrantRow, SubscribeGrantRow.customer_id),
        (SubscribeHoldRow, SubscribeHoldRow.customer_id),
        (WeComMassCheckRow, WeComMassCheckRow.customer_id),
        (WeComQuotaHoldRow, WeComQuotaHoldRow.customer_id),
    ):
        await session.execute(delete(table).where(table.tenant_id == tenant_id, column == customer_id))
    await session.execute(
        insert(ErasedCustomerRow)
        .values(tenant_id=tenant_id, customer_id=customer_id, erased_at=at)
        .on_conflict_do_nothing()
    )


async def merge(session: AsyncSession, tenant_id: str, survivor: str, merged_ids: list[str]) -> None:
    """Point the merged ids at the survivor and move their touches, tasks, consents and subscribe grants to it."""
    for merged in merged_ids:
        await session.execute(
            insert(CustomerAliasRow)
            .values(tenant_id=tenant_id, merged_id=merged, customer_id=survivor)
            .on_conflict_do_update(
                index_elements=[CustomerAliasRow.tenant_id, CustomerAliasRow.merged_id], set_={"customer_id": survivor}
            )
        )
        for table in (TouchRow, StaffTaskRow, WeComMassCheckRow):
            await session.execute(
                update(table)
                .where(table.tenant_id == tenant_id, table.customer_id == merged)
                .values(customer_id=survivor)
            )
        await _merge_quota_hold(session, tenant_id, survivor, merged)
        moved = (
            await session.execute(
                delete(ConsentRow)
                .where(ConsentRow.tenant_id == tenant_id, ConsentRow.customer_id == merged)
                .returning(ConsentRow.channel, ConsentRow.status, ConsentRow.source, ConsentRow.occurred_at)
            )
        ).all()
        for row in moved:
            # Never harass: a negative consent of either record wins; otherwise the newer one.
            await record_consent(
                session, tenant_id, survivor, row.channel, row.status, row.source, row.occurred_at, negative_wins=True
            )
        await subscribe_grants.merge(session, tenant_id, survivor, merged)
        await session.execute(
            delete(CustomerRow).where(CustomerRow.tenant_id == tenant_id, CustomerRow.customer_id == merged)
        )


async def _merge_quota_hold(session: AsyncSession, tenant_id: str, survivor: str, merged: str) -> None:
    """A WeCom over-quota hold of the merged record holds the survivor too (the later one wins)."""
    moved = (
        await session.execute(
            delete(WeComQuotaHoldRow)
            .where(WeComQuotaHoldRow.tenant_id == tenant_id, WeComQuotaHoldRow.customer_id == merged)
            .returning(WeComQuotaHoldRow.hold_until, WeComQuotaHoldRow.recorded_at)
        )
    ).first()
    if moved is not None:
        stmt = insert(WeComQuotaHoldRow).values(
            tenant_id=tenant_id, customer_id=survivor, hold_until=moved.hold_until, recorded_at=moved.recorded_at
        )
        await session.execute(
            stmt.on_conflict_do_update(
                index_elements=[WeComQuotaHoldRow.tenant_id, WeComQuotaHoldRow.customer_id],
                set_={"hold_until": func.greatest(WeComQuotaHoldRow.hold_until, stmt.excluded.hold_until)},
            )
        )


async def record_consent(
    session: AsyncSession,
    tenant_id: str,
    customer_id: str,
    channel: str,
    status: str,
    source: str,
    at: datetime,
    negative_wins: bool = False,
) -> None:
    """Store an explicit consent unless a newer record exists (or, merging, a negative one)."""
    stmt = insert(ConsentRow).values(
        tenant_id=tenant_id, customer_id=customer_id, channel=channel, status=status, source=source, occurred_at=at
    )
    newer = ConsentRow.occurred_at <= stmt.excluded.occurred_at
    if negative_wins:
        newer = ConsentRow.status.notin_(NEGATIVE) & (newer | stmt.excluded.status.in_(NEGATIVE))
    await session.execute(
        stmt.on_conflict_do_update(
            index_elements=[ConsentRow.tenant_id, ConsentRow.customer_id, ConsentRow.channel],
            set_={"status": status, "source": source, "occurred_at": at},
            where=newer,
        )
    )


async def resolve(session: AsyncSession, tenant_id: str, customer_id: str) -> str:
    """The surviving id of a (possibly merged) customer."""
    alias = await session.get(CustomerAliasRow, (tenant_id, customer_id))
    return alias.customer_id if alias else customer_id


def view_of(row: CustomerRow) -> CustomerView:
    return CustomerView(
        customer_id=row.customer_id,
        version=row.version,
        snapshot_at=row.snapshot_at,
        lifecycle_stage=row.lifecycle_stage,
        tier=row.tier,
        owner_staff_id=row.owner_staff_id,
        timezone=row.timezone,
        locale=row.locale,
        phone=row.phone,
        email=row.email,
        wecom_external_userid=row.wecom_external_userid,
        wechat_openid=row.wechat_openid,
        wecom_staff_ids=tuple(row.wecom_staff_ids or ()),
        official_account_follower=row.official_account_follower,
        sms_consent=row.sms_consent,  # type: ignore[arg-type]
        email_consent=row.email_consent,  # type: ignore[arg-type]
    )


async def consents_of(session: AsyncSession, tenant_id: str, customer_id: str) -> dict[str, ConsentRecord]:
    rows = (
        await session.execute(
            select(ConsentRow).where(ConsentRow.tenant_id == tenant_id, ConsentRow.customer_id == customer_id)
        )
    ).scalars()
    return {r.channel: ConsentRecord(r.status, r.source, r.occurred_at) for r in rows}  # type: ignore[arg-type]


async def is_erased(session: AsyncSession, tenant_id: str, customer_id: str) -> bool:
    return await session.get(ErasedCustomerRow, (tenant_id, customer_id)) is not None
