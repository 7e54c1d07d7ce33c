"""Tenant settings, value refresh (CLV fit, RFM, tiers), staff handover and dashboard metrics."""

from dataclasses import asdict

from fastapi import APIRouter, Request

from scrm_kit.runtime import ReadSessionDep
from scrm_kit.tenancy import TenantDep
from scrm_profile.adapters import repository as repo
from scrm_profile.domain.settings import ProfileSettings
from scrm_profile.entrypoints import schemas as s
from scrm_profile.service.customers import handover
from scrm_profile.service.jobs import refresh_tenant_value
from scrm_profile.service.metrics import Dashboard, dashboard

router = APIRouter(prefix="/v1", tags=["admin"])


@router.get("/settings", response_model=ProfileSettings)
async def get_settings(tenant: TenantDep, session: ReadSessionDep) -> ProfileSettings:
    """Stage thresholds, tier rules, CLV horizon and phone region of this tenant."""
    return await repo.tenant_settings(session, tenant.tenant_id)


@router.put("/settings", response_model=ProfileSettings)
async def put_settings(body: ProfileSettings, tenant: TenantDep, request: Request) -> ProfileSettings:
    async with request.app.state.runtime.sessions() as session, session.begin():
        await repo.save_tenant_settings(session, tenant.tenant_id, body)
    return body


@router.post("/value/refresh", response_model=s.ValueRefreshOut)
async def refresh_value(tenant: TenantDep, request: Request) -> s.ValueRefreshOut:
    """Fit BG/NBD + Gamma-Gamma on this tenant now, score every customer, recompute RFM and tiers."""
    async with request.app.state.runtime.sessions() as session, session.begin():
        report = await refresh_tenant_value(session, tenant.tenant_id, request.app.state.clock.now())
    return s.ValueRefreshOut(**asdict(report))


@router.post("/staff/{staff_id}/handover", response_model=s.HandoverOut)
async def staff_handover(staff_id: str, body: s.HandoverIn, tenant: TenantDep, request: Request) -> s.HandoverOut:
    """A staff member leaves: every customer they own moves to another (离职继承), audited and published."""
    async with request.app.state.runtime.sessions() as session, session.begin():
        moved = await handover(
            session, tenant.tenant_id, staff_id, body.to_staff_id, body.store_id, request.app.state.clock.now()
        )
    return s.HandoverOut(from_staff_id=staff_id, to_staff_id=body.to_staff_id, customers=moved)


@router.get("/metrics/dashboard", response_model=Dashboard)
async def get_dashboard(tenant: TenantDep, session: ReadSessionDep, request: Request) -> Dashboard:
    """Counts by stage, tier and RFM cell; revenue, repurchase rate, frequency, order value, cohort retention
    at 7/30/90 days by first-order month, and the CLV distribution."""
    return await dashboard(session, tenant.tenant_id, request.app.state.clock.now())
