"""Profile HTTP API: customers for frontends. Thin routes; every query is scoped to the caller's tenant."""

import base64
from datetime import UTC, datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

import orjson
from fastapi import APIRouter, FastAPI, Path, Query, Request
from sqlalchemy import and_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_kit.errors import InvalidInput, NotFound
from scrm_kit.runtime import ReadSessionDep, create_app
from scrm_kit.tenancy import TenantDep
from scrm_profile.adapters import reads
from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.orm import CustomerRow, SegmentMemberRow
from scrm_profile.bootstrap import build_runtime
from scrm_profile.domain.customers import Aggregates
from scrm_profile.domain.identity import normalise
from scrm_profile.entrypoints import schemas as s
from scrm_profile.entrypoints.api_admin import router as admin_router
from scrm_profile.entrypoints.api_segments import router as segments_router
from scrm_profile.service import customers as customer_service
from scrm_profile.settings import Settings

router = APIRouter(prefix="/v1", tags=["customers"])
CustomerRef = Annotated[
    str,
    Path(
        description="`cus_...` (our id), or `user_id:`, `anonymous_id:`, `phone:`, `email:`, `wecom:`, "
        "`unionid:`, `openid:` followed by the identifier"
    ),
]
SORTS = {
    "created_at": CustomerRow.created_at,
    "revenue_total": CustomerRow.revenue_total,
    "last_order_at": CustomerRow.last_order_at,
    "clv": CustomerRow.clv,
    "orders_count": CustomerRow.orders_count,
}


async def customer_or_404(session: AsyncSession, tenant_id: str, ref: str) -> CustomerRow:
    # Only phones need the tenant's default region to be normalised.
    region = (await repo.tenant_settings(session, tenant_id)).default_country if ref.startswith("phone:") else "CN"
    customer = await repo.find_customer(session, tenant_id, ref, region)
    if customer is None:
        raise NotFound(f"no customer {ref!r} in this tenant")
    return customer


async def customer_out(session: AsyncSession, customer: CustomerRow) -> s.CustomerOut:
    return customer_view(customer, await reads.customer_details(session, customer.tenant_id, customer.customer_id))


def customer_view(customer: Any, details: reads.CustomerDetails) -> s.CustomerOut:
    """The API's view of a customer: ``customer`` is an ORM row or a row of the customers columns."""
    cid = customer.customer_id
    identities: dict[str, list[str]] = {}
    for kind, value in details.identities:
        identities.setdefault(kind, []).append(value)
    segments = details.segments
    touches = details.touches
    aov = Aggregates(customer.orders_count, customer.revenue_total, None, None).average_order_value
    return s.CustomerOut(
        customer_id=cid,
        user_id=customer.user_id,
        anonymous_id=customer.anonymous_id,
        identities=identities,
        lifecycle_stage=customer.lifecycle_stage,
        next_stage_at=customer.next_stage_at,
        tier=customer.tier,
        orders_count=customer.orders_count,
        revenue_total=customer.revenue_total,
        average_order_value=aov,
        first_order_at=customer.first_order_at,
        last_order_at=customer.last_order_at,
        avg_interval_days=customer.avg_interval_days,
        name=customer.name,
        birthday=customer.birthday,
        gender=customer.gender,
        city=customer.city,
        timezone=customer.timezone,
        owner_staff_id=customer.owner_staff_id,
        store_id=customer.store_id,
        traits=customer.traits or {},
        tags=list(customer.tags or []),
        segments=segments,
        membership=s.Membership(
            level=customer.membership_level,
            started_at=customer.membership_started_at,
            expires_at=customer.membership_expires_at,
            stored_value_balance=customer.stored_value_balance,
        ),
        reachability=s.Reach(
            wecom_staff_ids=list(customer.wecom_staff_ids or []),
            official_account_follower=customer.official_account_follower,
            sms=customer.sms_consent,
            email=customer.email_consent,
        ),
        last_engagement_at=customer.last_engagement_at,
        rfm=s.Rfm(r=customer.rfm_r, f=customer.rfm_f, m=customer.rfm_m, segment=customer.rfm_segment),
        value=s.Value(
            expected_purchases=customer.expected_purchases,
            probability_alive=customer.probability_alive,
            clv=customer.clv,
        ),
        created_at=customer.created_at,
        updated_at=customer.updated_at,
        touches=[s.TouchOut.model_validate(t) for t in touches],
        links=s.CustomerLinks(timeline=f"/v1/customers/{cid}/timeline"),
    )


def encode_cursor(values: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(values, default=str)).decode()


def decode_cursor(cursor: str) -> list[Any]:
    try:
        values = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
    except (ValueError, orjson.JSONDecodeError) as exc:
        raise InvalidInput("not a cursor this API returned", field="cursor") from exc
    if not isinstance(values, list) or len(values) != 2:
        raise InvalidInput("not a cursor this API returned", field="cursor")
    return values


@router.get("/customers", response_model=s.CustomerPage)
async def search_customers(
    tenant: TenantDep,
    session: ReadSessionDep,
    lifecycle_stage: str | None = None,
    tier: str | None = None,
    rfm_segment: str | None = None,
    tag: str | None = None,
    owner_staff_id: str | None = None,
    segment_id: str | None = None,
    sort: Literal["created_at", "revenue_total", "last_order_at", "clv", "orders_count"] = "created_at",
    order: Literal["asc", "desc"] = "desc",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> s.CustomerPage:
    """Search customers with filters, sorted, in pages (cursor pagination: stable under inserts)."""
    column = SORTS[sort]
    query = select(CustomerRow).where(CustomerRow.tenant_id == tenant.tenant_id)
    for field_name, value in (
        ("lifecycle_stage", lifecycle_stage),
        ("tier", tier),
        ("rfm_segment", rfm_segment),
        ("owner_staff_id", owner_staff_id),
    ):
        if value is not None:
            query = query.where(getattr(CustomerRow, field_name) == value)
    if tag is not None:
        query = query.where(CustomerRow.tags.any(tag))
    if segment_id is not None:
        query = query.join(
            SegmentMemberRow,
            and_(
                SegmentMemberRow.tenant_id == CustomerRow.tenant_id,
                SegmentMemberRow.customer_id == CustomerRow.customer_id,
                SegmentMemberRow.segment_id == segment_id,
            ),
        )
    if sort in ("last_order_at", "clv"):
        query = query.where(column.isnot(None))  # customers without the value are not ranked by it
    if cursor is not None:
        after_value, after_id = decode_cursor(cursor)
        bound, after = tuple_(column, CustomerRow.customer_id), tuple_(_typed(sort, after_value), after_id)
        query = query.where(bound < after if order == "desc" else bound > after)
    direction = (
        (column.desc(), CustomerRow.customer_id.desc())
        if order == "desc"
        else (column.asc(), CustomerRow.customer_id.asc())
    )
    rows = (await session.execute(query.order_by(*direction).limit(limit + 1))).scalars().all()
    page = rows[:limit]
    next_cursor = encode_cursor([getattr(page[-1], sort), page[-1].customer_id]) if len(rows) > limit else None
    return s.CustomerPage(items=[s.CustomerSummaryOut.of(c) for c in page], next_cursor=next_cursor)


def _typed(sort: str, value: Any) -> Any:
    if value is None:
        raise InvalidInput("not a cursor this API returned", field="cursor")
    if sort in ("created_at", "last_order_at"):
        return datetime.fromisoformat(str(value)).astimezone(UTC)
    if sort in ("revenue_total", "clv"):
        return Decimal(str(value))
    return int(value)


@router.get("/customers/{customer_ref}", response_model=s.CustomerOut)
async def get_customer(customer_ref: CustomerRef, tenant: TenantDep, session: ReadSessionDep) -> s.CustomerOut:
    """One customer's profile: identities, value, stage, tier, RFM, reachability, segments and latest touches."""
    tenant_id = tenant.tenant_id
    if customer_ref.startswith("cus_"):
        found = await reads.find_with_details(session, tenant_id, customer_id=customer_ref)
    else:
        prefix, _, raw = customer_ref.partition(":")
        kind = repo.REF_KINDS.get(prefix, "")
        # Only phones need the tenant's default region to be normalised.
        region = (await repo.tenant_settings(session, tenant_id)).default_country if kind == "phone" else "CN"
        value = normalise(kind, raw, region) if kind else None
        found = await reads.find_with_details(session, tenant_id, kind=kind, value=value) if value else None
    if found is None:
        raise NotFound(f"no customer {customer_ref!r} in this tenant")
    return customer_view(*found)


@router.get("/customers/{customer_ref}/timeline", response_model=s.TimelineOut)
async def get_timeline(customer_ref: CustomerRef, tenant: TenantDep, session: ReadSessionDep) -> s.TimelineOut:
    """Orders, events and touches, newest first."""
    customer = await customer_or_404(session, tenant.tenant_id, customer_ref)
    tenant_id, cid = tenant.tenant_id, customer.customer_id
    entries = (
        [
            s.TimelineEntry(
                kind="order",
                at=o.occurred_at,
                order_id=o.order_id,
                amount=o.amount,
                refunded_amount=o.refunded_amount,
                currency=o.currency,
            )
            for o in await repo.recent_orders(session, tenant_id, cid)
        ]
        + [
            s.TimelineEntry(kind="event", at=e.occurred_at, event=e.event, properties=e.properties)
            for e in await repo.recent_events(session, tenant_id, cid)
        ]
        + [
            s.TimelineEntry(
                kind="touch",
                at=t.occurred_at,
                touch_key=t.touch_key,
                channel=t.channel,
                status=t.status,
                reason=t.reason,
            )
            for t in await repo.recent_touches(session, tenant_id, cid)
        ]
    )
    entries.sort(key=lambda e: e.at, reverse=True)
    return s.TimelineOut(customer_id=cid, entries=entries)


@router.post("/customers/{customer_ref}/tags", response_model=s.CustomerOut)
async def change_tags(customer_ref: CustomerRef, body: s.TagsIn, tenant: TenantDep, request: Request) -> s.CustomerOut:
    """Add and remove manual tags; segments and journeys see the change at once."""
    async with request.app.state.runtime.sessions() as session, session.begin():
        found = await customer_or_404(session, tenant.tenant_id, customer_ref)
        customer = await customer_service.change_tags(
            session, found.customer_id, tenant.tenant_id, body.add, body.remove, request.app.state.clock.now()
        )
        return await customer_out(session, customer)


@router.delete("/customers/{customer_ref}", response_model=s.ErasedOut)
async def erase_customer(customer_ref: CustomerRef, tenant: TenantDep, request: Request) -> s.ErasedOut:
    """Erase the person (PIPL): every row of theirs goes, and `customer.erased` tells the other services."""
    async with request.app.state.runtime.sessions() as session, session.begin():
        customer = await customer_or_404(session, tenant.tenant_id, customer_ref)
        await customer_service.erase(session, customer, request.app.state.clock.now())
    return s.ErasedOut(customer_id=customer.customer_id, erased=True)


def app() -> FastAPI:
    """ASGI factory: ``uvicorn --factory scrm_profile.entrypoints.api:app``."""
    from scrm_kit.clock import SystemClock

    settings = Settings()
    application = create_app(
        lambda: build_runtime(settings),
        title="SCRM profile",
        routers=[router, segments_router, admin_router] if "api" in settings.roles else [],
    )
    application.state.clock = SystemClock()
    return application
