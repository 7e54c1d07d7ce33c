"""Notify HTTP API. Thin routes; every query is scoped to the caller's tenant."""

from datetime import datetime

from fastapi import APIRouter, FastAPI, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy import select

from scrm_kit.runtime import SessionDep, create_app
from scrm_kit.tenancy import TenantDep
from scrm_notify.adapters.orm import TouchRow
from scrm_notify.bootstrap import build_runtime
from scrm_notify.service.channels import configure_webhook
from scrm_notify.settings import Settings

router = APIRouter(prefix="/v1", tags=["notify"])


class WebhookConfigIn(BaseModel):
    url: str = Field(description="Where touches are POSTed")
    secret: str | None = Field(default=None, description="HMAC signing secret; generated when omitted")


class WebhookConfigOut(BaseModel):
    channel: str
    url: str
    secret: str


class TouchOut(BaseModel):
    touch_key: str
    customer_id: str
    journey_id: str | None
    channel: str | None
    template_id: str
    priority: str
    status: str
    reason: str | None
    attempts: int
    requested_at: datetime
    updated_at: datetime


class TouchPage(BaseModel):
    items: list[TouchOut]


@router.put("/channels/webhook", response_model=WebhookConfigOut)
async def put_webhook(body: WebhookConfigIn, tenant: TenantDep, request: Request) -> WebhookConfigOut:
    """Configure the tenant's webhook channel; the answer carries the signing secret."""
    url, secret = await configure_webhook(request.app.state.runtime.sessions, tenant.tenant_id, body.url, body.secret)
    return WebhookConfigOut(channel="webhook", url=url, secret=secret)


@router.get("/touches", response_model=TouchPage)
async def list_touches(
    tenant: TenantDep,
    session: SessionDep,
    customer_id: str | None = Query(default=None),
    limit: int = Query(default=50, ge=1, le=500),
) -> TouchPage:
    """Touches with their status and reason, newest first."""
    query = select(TouchRow).where(TouchRow.tenant_id == tenant.tenant_id)
    if customer_id:
        query = query.where(TouchRow.customer_id == customer_id)
    rows = (await session.execute(query.order_by(TouchRow.requested_at.desc()).limit(limit))).scalars()
    return TouchPage(items=[TouchOut.model_validate(r, from_attributes=True) for r in rows])


def app() -> FastAPI:
    """ASGI factory: ``uvicorn --factory scrm_notify.entrypoints.api:app``."""
    settings = Settings()
    return create_app(
        lambda: build_runtime(settings), title="SCRM notify", routers=[router] if "api" in settings.roles else []
    )
