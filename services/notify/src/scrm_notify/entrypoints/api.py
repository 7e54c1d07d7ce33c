"""Notify HTTP API. Thin routes; every query is scoped to the caller's tenant."""

from typing import Annotated

from fastapi import APIRouter, FastAPI, Path, Query, Request
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_kit.errors import InvalidInput, NotFound
from scrm_kit.runtime import SessionDep, create_app
from scrm_kit.tenancy import TenantDep
from scrm_notify.adapters import directory, subscribe_grants
from scrm_notify.adapters.orm import CustomerRow, StaffTaskRow, TouchRow
from scrm_notify.bootstrap import build_runtime
from scrm_notify.domain.consent import address_of, effective_consent
from scrm_notify.domain.policy import CHANNELS
from scrm_notify.entrypoints import api_config
from scrm_notify.entrypoints.schemas import (
    ClaimIn,
    CompleteIn,
    ConsentIn,
    ConsentList,
    ConsentOut,
    StatRow,
    SubscribeGrantOut,
    TaskOut,
    TaskPage,
    TouchOut,
    TouchPage,
    TouchStats,
)
from scrm_notify.service.tasks import TaskService
from scrm_notify.settings import Settings

router = APIRouter(prefix="/v1", tags=["notify"])
CustomerId = Annotated[str, Path(min_length=1, max_length=200)]


@router.get("/touches", response_model=TouchPage)
async def list_touches(
    tenant: TenantDep,
    session: SessionDep,
    customer_id: str | None = Query(default=None),
    journey_id: str | None = Query(default=None),
    status: str | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=500),
) -> TouchPage:
    """Touches with their status and reason, newest first."""
    query = select(TouchRow).where(TouchRow.tenant_id == tenant.tenant_id)
    if customer_id:
        query = query.where(TouchRow.customer_id == await directory.resolve(session, tenant.tenant_id, customer_id))
    if journey_id:
        query = query.where(TouchRow.journey_id == journey_id)
    if status:
        query = query.where(TouchRow.status == status)
    rows = (await session.execute(query.order_by(TouchRow.requested_at.desc()).limit(limit))).scalars()
    return TouchPage(items=[TouchOut.model_validate(r, from_attributes=True) for r in rows])


@router.get("/customers/{customer_id}/consents", response_model=ConsentList)
async def get_consents(customer_id: CustomerId, tenant: TenantDep, session: SessionDep) -> ConsentList:
    """Consent per channel as the gates see it: explicit records and the profile's reachability."""
    survivor = await directory.resolve(session, tenant.tenant_id, customer_id)
    row = await session.get(CustomerRow, (tenant.tenant_id, survivor))
    explicit = await directory.consents_of(session, tenant.tenant_id, survivor)
    if row is None and not explicit:
        raise NotFound(f"no customer {customer_id!r}")
    items = []
    for channel in CHANNELS:
        if row is None:
            record = explicit.get(channel)
            if record is None:
                continue
            items.append(
                ConsentOut(
                    channel=channel,
                    status=record.status,
                    source=record.source,
                    updated_at=record.occurred_at,
                    reachable=False,
                )
            )
            continue
        view = directory.view_of(row)
        record = effective_consent(view, channel, explicit.get(channel))
        items.append(
            ConsentOut(
                channel=channel,
                status=record.status,
                source=record.source,
                updated_at=record.occurred_at,
                reachable=address_of(view, channel) is not None,
                subscribe_grants=await _subscribe_grants(session, tenant.tenant_id, survivor)
                if channel == "wechat_oa"
                else None,
            )
        )
    return ConsentList(customer_id=survivor, items=items)


async def _subscribe_grants(session: AsyncSession, tenant_id: str, customer_id: str) -> list[SubscribeGrantOut]:
    held = await subscribe_grants.held_count(session, tenant_id, customer_id)
    return [
        SubscribeGrantOut(
            wechat_template_id=g.wechat_template_id,
            unspent=g.unspent,
            held=held.get(g.wechat_template_id, 0),
            last_status=g.last_status,
            answered_at=g.answered_at,
        )
        for g in await subscribe_grants.of_customer(session, tenant_id, customer_id)
    ]


@router.put("/customers/{customer_id}/consents/{channel}", response_model=ConsentList)
async def put_consent(
    customer_id: CustomerId, channel: str, body: ConsentIn, tenant: TenantDep, request: Request, session: SessionDep
) -> ConsentList:
    """Record an explicit consent (it takes effect for the next gate check, also of touches already waiting)."""
    if channel not in CHANNELS:
        raise InvalidInput(f"unknown channel {channel!r}; one of {', '.join(CHANNELS)}", field="channel")
    runtime = request.app.state.runtime
    async with runtime.sessions() as write, write.begin():
        survivor = await directory.resolve(write, tenant.tenant_id, customer_id)
        await directory.record_consent(
            write, tenant.tenant_id, survivor, channel, body.status, f"api:{body.source}", request.app.state.clock.now()
        )
    return await get_consents(customer_id, tenant, session)


@router.get("/tasks", response_model=TaskPage)
async def list_tasks(
    tenant: TenantDep,
    session: SessionDep,
    staff_id: str = Query(min_length=1),
    status: str | None = Query(default=None, description="open, claimed, completed, expired"),
    limit: int = Query(default=100, ge=1, le=500),
) -> TaskPage:
    """A staff member's tasks, soonest due first."""
    query = select(StaffTaskRow).where(StaffTaskRow.tenant_id == tenant.tenant_id, StaffTaskRow.staff_id == staff_id)
    if status:
        query = query.where(StaffTaskRow.status == status)
    rows = (await session.execute(query.order_by(StaffTaskRow.due_at, StaffTaskRow.created_at).limit(limit))).scalars()
    return TaskPage(items=[TaskOut.model_validate(r, from_attributes=True) for r in rows])


@router.post("/tasks/{task_id}/claim", response_model=TaskOut)
async def claim_task(task_id: str, body: ClaimIn, tenant: TenantDep, request: Request) -> TaskOut:
    task = await _tasks(request).claim(tenant.tenant_id, task_id, body.staff_id)
    return TaskOut.model_validate(task, from_attributes=True)


@router.post("/tasks/{task_id}/complete", response_model=TaskOut)
async def complete_task(task_id: str, body: CompleteIn, tenant: TenantDep, request: Request) -> TaskOut:
    """Close the task with its outcome; publishes a ``completed`` TouchResult carrying ``outcome``."""
    task = await _tasks(request).complete(tenant.tenant_id, task_id, body.outcome, body.note)
    return TaskOut.model_validate(task, from_attributes=True)


def _tasks(request: Request) -> TaskService:
    return TaskService(request.app.state.runtime.sessions, request.app.state.clock)


@router.get("/stats/touches", response_model=TouchStats)
async def touch_stats(tenant: TenantDep, session: SessionDep) -> TouchStats:
    """Touch counts per channel and status, and per reason and status."""
    channel = func.coalesce(TouchRow.channel, "none")
    mine = TouchRow.tenant_id == tenant.tenant_id
    by_channel = await session.execute(
        select(channel, TouchRow.status, func.count()).where(mine).group_by(channel, TouchRow.status).order_by(channel)
    )
    by_reason = await session.execute(
        select(TouchRow.reason_code, TouchRow.status, func.count())
        .where(mine, TouchRow.reason_code.is_not(None))
        .group_by(TouchRow.reason_code, TouchRow.status)
        .order_by(TouchRow.reason_code)
    )
    return TouchStats(
        by_channel=[StatRow(key=k, status=s, count=c) for k, s, c in by_channel],
        by_reason=[StatRow(key=k, status=s, count=c) for k, s, c in by_reason],
    )


def app() -> FastAPI:
    """ASGI factory: ``uvicorn --factory scrm_notify.entrypoints.api:app``."""
    from scrm_kit.clock import SystemClock

    settings = Settings()
    clock = SystemClock()
    routers = [router, api_config.router] if "api" in settings.roles else []
    application = create_app(lambda: build_runtime(settings, clock), title="SCRM notify", routers=routers)
    application.state.clock = clock
    return application
