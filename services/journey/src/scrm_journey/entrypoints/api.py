"""Journey HTTP API. Thin routes; every query is scoped to the caller's tenant."""

from datetime import datetime

from fastapi import APIRouter, FastAPI
from pydantic import BaseModel
from sqlalchemy import select

from scrm_journey.adapters.orm import InstanceRow, TransitionRow
from scrm_journey.bootstrap import build_runtime
from scrm_journey.domain.journeys import BUILT_IN
from scrm_journey.settings import Settings
from scrm_kit.runtime import SessionDep, create_app
from scrm_kit.tenancy import TenantDep

router = APIRouter(prefix="/v1", tags=["journeys"])


class TransitionOut(BaseModel):
    node_id: str
    outcome: str
    at: datetime


class InstanceOut(BaseModel):
    instance_id: str
    journey_id: str
    journey_version: int
    state: str
    current_node: str | None
    entered_at: datetime
    transitions: list[TransitionOut]


class CustomerJourneysOut(BaseModel):
    customer_id: str
    instances: list[InstanceOut]


class JourneySummary(BaseModel):
    journey_id: str
    version: int
    name: str
    built_in: bool


@router.get("/journeys", response_model=list[JourneySummary])
async def list_journeys(tenant: TenantDep) -> list[JourneySummary]:
    """Journeys running for this tenant (the skeleton runs the built-in ones for every tenant)."""
    return [JourneySummary(journey_id=j.journey_id, version=j.version, name=j.name, built_in=True) for j in BUILT_IN]


@router.get("/customers/{customer_id}/journeys", response_model=CustomerJourneysOut)
async def customer_journeys(customer_id: str, tenant: TenantDep, session: SessionDep) -> CustomerJourneysOut:
    """Every journey instance of one customer, with the transitions it made."""
    instances = (
        (
            await session.execute(
                select(InstanceRow)
                .where(InstanceRow.tenant_id == tenant.tenant_id, InstanceRow.customer_id == customer_id)
                .order_by(InstanceRow.entered_at)
            )
        )
        .scalars()
        .all()
    )
    transitions = (
        (
            await session.execute(
                select(TransitionRow)
                .where(
                    TransitionRow.tenant_id == tenant.tenant_id,
                    TransitionRow.instance_id.in_([i.instance_id for i in instances]),
                )
                .order_by(TransitionRow.id)
            )
        )
        .scalars()
        .all()
    )
    by_instance: dict[str, list[TransitionOut]] = {}
    for t in transitions:
        by_instance.setdefault(t.instance_id, []).append(TransitionOut(node_id=t.node_id, outcome=t.outcome, at=t.at))
    return CustomerJourneysOut(
        customer_id=customer_id,
        instances=[
            InstanceOut(
                instance_id=i.instance_id,
                journey_id=i.journey_id,
                journey_version=i.journey_version,
                state=i.state,
                current_node=i.current_node,
                entered_at=i.entered_at,
                transitions=by_instance.get(i.instance_id, []),
            )
            for i in instances
        ],
    )


def app() -> FastAPI:
    """ASGI factory: ``uvicorn --factory scrm_journey.entrypoints.api:app``."""
    settings = Settings()
    return create_app(
        lambda: build_runtime(settings), title="SCRM journey", routers=[router] if "api" in settings.roles else []
    )
