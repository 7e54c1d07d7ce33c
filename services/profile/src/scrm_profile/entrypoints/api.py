"""Profile HTTP API: customers for frontends. Thin routes; every query is scoped to the caller's tenant."""

from datetime import datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, Path
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_kit.errors import NotFound
from scrm_kit.runtime import SessionDep, create_app
from scrm_kit.tenancy import TenantDep
from scrm_profile.adapters import repository as repo
from scrm_profile.adapters.orm import CustomerRow
from scrm_profile.bootstrap import build_runtime
from scrm_profile.settings import Settings

CustomerRef = Annotated[
    str,
    Path(description="`cus_...` (our id), `user_id:<the shop's user id>` or `anonymous_id:<id>`"),
]


class TouchOut(BaseModel):
    touch_key: str
    journey_id: str | None
    channel: str | None
    template_id: str | None
    status: str
    reason: str | None
    occurred_at: datetime


class CustomerLinks(BaseModel):
    timeline: str


class CustomerOut(BaseModel):
    customer_id: str
    user_id: str | None
    anonymous_id: str | None
    lifecycle_stage: str
    orders_count: int
    revenue_total: Decimal
    first_order_at: datetime | None
    last_order_at: datetime | None
    created_at: datetime
    touches: list[TouchOut]
    links: CustomerLinks


class TimelineEntry(BaseModel):
    kind: Literal["order", "touch"]
    at: datetime
    order_id: str | None = None
    amount: Decimal | None = None
    refunded_amount: Decimal | None = None
    currency: str | None = None
    touch_key: str | None = None
    channel: str | None = None
    status: str | None = None
    reason: str | None = None


class TimelineOut(BaseModel):
    customer_id: str
    entries: list[TimelineEntry]


router = APIRouter(prefix="/v1", tags=["customers"])


async def _customer(session: AsyncSession, tenant_id: str, ref: str) -> CustomerRow:
    customer = await repo.find_customer(session, tenant_id, ref)
    if customer is None:
        raise NotFound(f"no customer {ref!r} in this tenant")
    return customer


def _touch_out(t: object) -> TouchOut:
    return TouchOut.model_validate(t, from_attributes=True)


@router.get("/customers/{customer_ref}", response_model=CustomerOut)
async def get_customer(customer_ref: CustomerRef, tenant: TenantDep, session: SessionDep) -> CustomerOut:
    """One customer's profile with their most recent touches."""
    customer = await _customer(session, tenant.tenant_id, customer_ref)
    touches = await repo.recent_touches(session, tenant.tenant_id, customer.customer_id)
    return CustomerOut(
        customer_id=customer.customer_id,
        user_id=customer.user_id,
        anonymous_id=customer.anonymous_id,
        lifecycle_stage=customer.lifecycle_stage,
        orders_count=customer.orders_count,
        revenue_total=customer.revenue_total,
        first_order_at=customer.first_order_at,
        last_order_at=customer.last_order_at,
        created_at=customer.created_at,
        touches=[_touch_out(t) for t in touches],
        links=CustomerLinks(timeline=f"/v1/customers/{customer.customer_id}/timeline"),
    )


@router.get("/customers/{customer_ref}/timeline", response_model=TimelineOut)
async def get_timeline(customer_ref: CustomerRef, tenant: TenantDep, session: SessionDep) -> TimelineOut:
    """Orders and touches, newest first."""
    customer = await _customer(session, tenant.tenant_id, customer_ref)
    orders = await repo.recent_orders(session, tenant.tenant_id, customer.customer_id)
    touches = await repo.recent_touches(session, tenant.tenant_id, customer.customer_id)
    entries = [
        TimelineEntry(
            kind="order",
            at=o.occurred_at,
            order_id=o.order_id,
            amount=o.amount,
            refunded_amount=o.refunded_amount,
            currency=o.currency,
        )
        for o in orders
    ] + [
        TimelineEntry(
            kind="touch", at=t.occurred_at, touch_key=t.touch_key, channel=t.channel, status=t.status, reason=t.reason
        )
        for t in touches
    ]
    entries.sort(key=lambda e: e.at, reverse=True)
    return TimelineOut(customer_id=customer.customer_id, entries=entries)


def app() -> FastAPI:
    """ASGI factory: ``uvicorn --factory scrm_profile.entrypoints.api:app``."""
    settings = Settings()
    return create_app(
        lambda: build_runtime(settings),
        title="SCRM profile",
        routers=[router] if "api" in settings.roles else [],
    )
