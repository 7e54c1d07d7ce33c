"""Journey HTTP API. Thin routes; every query is scoped to the caller's tenant (Bearer API token)."""

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, FastAPI, Query, Request

from scrm_journey.adapters.notify import NotifyTemplates
from scrm_journey.bootstrap import build_notify_client, build_runtime
from scrm_journey.domain.definition import walk_order
from scrm_journey.domain.playbooks import PLAYBOOKS
from scrm_journey.domain.simulate import ScriptedEvent, ScriptedTaskOutcome, simulate
from scrm_journey.domain.templates import TemplateCatalogue
from scrm_journey.domain.validation import DefinitionError, load_document, parse_definition
from scrm_journey.entrypoints.schemas import (
    CustomerJourneysOut,
    GoalOut,
    GroupOut,
    InstanceOut,
    InstancesOut,
    JourneyOut,
    NodeCount,
    PlaybookOut,
    ProblemOut,
    SimTagsOut,
    SimTouchOut,
    SimulateIn,
    SimulateOut,
    StatsOut,
    TransitionOut,
    ValidationOut,
    VersionOut,
)
from scrm_journey.service.definitions import validation_problems
from scrm_journey.service.journeys import JourneyAdmin, JourneyView
from scrm_journey.service.queries import instances_of, journey_stats
from scrm_journey.settings import Settings
from scrm_kit.clock import Clock, SystemClock
from scrm_kit.errors import InvalidInput
from scrm_kit.runtime import SessionDep, create_app
from scrm_kit.tenancy import TenantDep

router = APIRouter(prefix="/v1", tags=["journeys"])
CLOCK: Clock = SystemClock()
DEFINITION_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"type": "object"}},
            "application/yaml": {"schema": {"type": "string"}},
        },
    }
}


async def _document(request: Request) -> Any:
    """The posted definition, JSON or YAML (by Content-Type)."""
    try:
        return load_document(await request.body(), request.headers.get("content-type", "application/json"))
    except DefinitionError as exc:
        raise _invalid(exc) from exc


async def _templates(request: Request) -> TemplateCatalogue:
    """notify's template catalogue, asked with the caller's own API token (already authenticated by TenantDep)."""
    return NotifyTemplates(request.app.state.notify, request.headers.get("authorization", ""))


TemplatesDep = Annotated[TemplateCatalogue, Depends(_templates)]


def _invalid(exc: DefinitionError) -> InvalidInput:
    return InvalidInput(str(exc), field=exc.problems[0].field if exc.problems else "body")


def _journey_out(view: JourneyView) -> JourneyOut:
    return JourneyOut(
        journey_id=view.journey_id, name=view.name, status=view.status, version=view.published_version,
        playbook=view.playbook, built_in=view.built_in, definition=view.draft, created_at=view.created_at,
        updated_at=view.updated_at,
    )  # fmt: skip


def _instance_out(row: Any, moves: list[Any]) -> InstanceOut:
    return InstanceOut(
        instance_id=row.instance_id, journey_id=row.journey_id, journey_version=row.journey_version,
        customer_id=row.customer_id, state=row.state, current_node=row.current_node, holdout=row.holdout,
        entered_at=row.entered_at, goal_at=row.goal_at,
        transitions=[TransitionOut(node_id=m.node_id, outcome=m.outcome, at=m.at) for m in moves],
    )  # fmt: skip


@router.get("/journeys", response_model=list[JourneyOut])
async def list_journeys(tenant: TenantDep, session: SessionDep) -> list[JourneyOut]:
    """The tenant's journeys (the default "welcome" playbook runs for every tenant until replaced)."""
    return [_journey_out(v) for v in await JourneyAdmin(session, tenant.tenant_id, CLOCK.now()).list()]


@router.post("/journeys", response_model=JourneyOut, status_code=201, openapi_extra=DEFINITION_BODY)
async def create_journey(
    request: Request, tenant: TenantDep, session: SessionDep, templates: TemplatesDep
) -> JourneyOut:
    """Create a draft journey from a JSON or YAML definition (publish it to start it). Every template id must exist
    in notify for the tenant on each channel its node may use; 503 when notify cannot be asked."""
    document = await _document(request)
    async with session.begin():
        try:
            view, _ = await JourneyAdmin(session, tenant.tenant_id, CLOCK.now(), templates).create(document)
        except DefinitionError as exc:
            raise _invalid(exc) from exc
    return _journey_out(view)


@router.post("/journeys/validate", response_model=ValidationOut, openapi_extra=DEFINITION_BODY)
async def validate_journey(request: Request, tenant: TenantDep, templates: TemplatesDep) -> ValidationOut:
    """Check a definition without storing it: every problem, with the node and field it is in, template ids
    against notify included (when notify cannot be asked, each sending node says "not checked": never valid)."""
    try:
        document = load_document(await request.body(), request.headers.get("content-type", ""))
    except DefinitionError as exc:
        problems = exc.problems
    else:
        problems = await validation_problems(document, templates)
    return ValidationOut(valid=not problems, errors=[ProblemOut(field=p.field, message=p.message) for p in problems])


@router.get("/journeys/{journey_id}", response_model=JourneyOut)
async def get_journey(journey_id: str, tenant: TenantDep, session: SessionDep) -> JourneyOut:
    return _journey_out(await JourneyAdmin(session, tenant.tenant_id, CLOCK.now()).get(journey_id))


@router.put("/journeys/{journey_id}", response_model=JourneyOut, openapi_extra=DEFINITION_BODY)
async def update_journey(
    journey_id: str, request: Request, tenant: TenantDep, session: SessionDep, templates: TemplatesDep
) -> JourneyOut:
    """Replace the draft (checked as on create); running instances are untouched until the next publish."""
    document = await _document(request)
    async with session.begin():
        admin = JourneyAdmin(session, tenant.tenant_id, CLOCK.now(), templates)
        try:
            view = await admin.update_draft(journey_id, document)
        except DefinitionError as exc:
            raise _invalid(exc) from exc
    return _journey_out(view)


@router.get("/journeys/{journey_id}/versions/{version}", response_model=VersionOut)
async def get_version(journey_id: str, version: int, tenant: TenantDep, session: SessionDep) -> VersionOut:
    """One published version, as new entries (or the instances that entered with it) run it."""
    definition = await JourneyAdmin(session, tenant.tenant_id, CLOCK.now()).version(journey_id, version)
    document = definition.model_dump(mode="json", by_alias=True, exclude_none=True)
    return VersionOut(journey_id=journey_id, version=version, definition=document)


@router.put("/journeys/{journey_id}/versions/{version}", response_model=VersionOut, openapi_extra=DEFINITION_BODY)
async def edit_version(journey_id: str, version: int, tenant: TenantDep, session: SessionDep) -> VersionOut:
    """Published versions are immutable: 409 naming ``version`` (edit the draft with PUT /v1/journeys/{id})."""
    await JourneyAdmin(session, tenant.tenant_id, CLOCK.now()).edit_version(journey_id, version)
    raise AssertionError("edit_version always raises")  # pragma: no cover


async def _lifecycle(
    action: str, journey_id: str, tenant_id: str, session: Any, templates: TemplateCatalogue | None = None
) -> JourneyOut:
    async with session.begin():
        admin = JourneyAdmin(session, tenant_id, CLOCK.now(), templates)
        try:
            view = await getattr(admin, action)(journey_id)
        except DefinitionError as exc:
            raise _invalid(exc) from exc
    return _journey_out(view)


@router.post("/journeys/{journey_id}/publish", response_model=JourneyOut)
async def publish_journey(
    journey_id: str, tenant: TenantDep, session: SessionDep, templates: TemplatesDep
) -> JourneyOut:
    """Publish the draft as the next version: new entries use it, running instances finish on theirs. Template ids
    are checked against notify again (400 naming the node when one is gone; 503 when notify cannot be asked)."""
    return await _lifecycle("publish", journey_id, tenant.tenant_id, session, templates)


@router.post("/journeys/{journey_id}/pause", response_model=JourneyOut)
async def pause_journey(journey_id: str, tenant: TenantDep, session: SessionDep) -> JourneyOut:
    """No new entries; waiting instances hold until resumed."""
    return await _lifecycle("pause", journey_id, tenant.tenant_id, session)


@router.post("/journeys/{journey_id}/resume", response_model=JourneyOut)
async def resume_journey(journey_id: str, tenant: TenantDep, session: SessionDep) -> JourneyOut:
    return await _lifecycle("resume", journey_id, tenant.tenant_id, session)


@router.post("/journeys/{journey_id}/archive", response_model=JourneyOut)
async def archive_journey(journey_id: str, tenant: TenantDep, session: SessionDep) -> JourneyOut:
    """Stop for good: running instances exit."""
    return await _lifecycle("archive", journey_id, tenant.tenant_id, session)


@router.delete("/journeys/{journey_id}", response_model=JourneyOut)
async def delete_journey(journey_id: str, tenant: TenantDep, session: SessionDep) -> JourneyOut:
    """Same as archive: history and stats stay."""
    return await _lifecycle("archive", journey_id, tenant.tenant_id, session)


@router.get("/journeys/{journey_id}/stats", response_model=StatsOut)
async def stats(journey_id: str, tenant: TenantDep, session: SessionDep) -> StatsOut:
    """Entered, states, per-node counts, goal conversion of treatment vs holdout and the uplift."""
    admin = JourneyAdmin(session, tenant.tenant_id, CLOCK.now())
    view = await admin.get(journey_id)
    definition = await admin.definition_for(journey_id, view.published_version) if view.published_version else None
    definition = definition or parse_definition(view.draft)
    found = await journey_stats(session, tenant.tenant_id, journey_id)
    nodes = [
        NodeCount(
            node_id=n, type=definition.nodes[n].type, current=found.current.get(n, 0), passed=found.passed.get(n, 0)
        )
        for n in walk_order(definition)
    ]
    overall = GroupOut(
        entered=found.entered,
        converted=found.treatment.converted + found.holdout.converted,
        rate=round((found.treatment.converted + found.holdout.converted) / found.entered, 4) if found.entered else None,
    )
    goal = GoalOut(
        event=definition.goal.event if definition.goal else None,
        treatment=GroupOut(entered=found.treatment.entered, converted=found.treatment.converted,
                           rate=found.treatment.rate),
        holdout=GroupOut(entered=found.holdout.entered, converted=found.holdout.converted, rate=found.holdout.rate),
        overall=overall,
        uplift=found.uplift,
    )  # fmt: skip
    return StatsOut(
        journey_id=journey_id, version=view.published_version, status=view.status, entered=found.entered,
        states=found.states, nodes=nodes, goal=goal,
    )  # fmt: skip


@router.get("/journeys/{journey_id}/instances", response_model=InstancesOut)
async def journey_instances(
    journey_id: str,
    tenant: TenantDep,
    session: SessionDep,
    node_id: Annotated[str | None, Query(description="Only instances now at this node")] = None,
    state: Annotated[str | None, Query(description="active, waiting, completed, converted or exited")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> InstancesOut:
    """Instances of one journey, by node and state."""
    found = await instances_of(
        session, tenant.tenant_id, journey_id=journey_id, node_id=node_id, state=state, limit=limit
    )
    return InstancesOut(journey_id=journey_id, instances=[_instance_out(i, m) for i, m in found])


@router.post("/journeys/{journey_id}/simulate", response_model=SimulateOut)
async def simulate_journey(
    journey_id: str, tenant: TenantDep, session: SessionDep, body: Annotated[SimulateIn, Body()]
) -> SimulateOut:
    """Run the journey for one posted profile on a virtual clock and return the path it would take."""
    admin = JourneyAdmin(session, tenant.tenant_id, CLOCK.now())
    view = await admin.get(journey_id)
    version = None if body.draft else (body.version or view.published_version)
    try:
        definition = await admin.definition_for(journey_id, version)
    except DefinitionError as exc:
        raise _invalid(exc) from exc
    facts = body.profile.model_dump(mode="json")
    result = simulate(
        definition,
        facts,
        body.start_at or CLOCK.now(),
        [ScriptedEvent(e.at, e.event, e.properties) for e in body.events],
        [ScriptedTaskOutcome(o.at, o.status) for o in body.task_outcomes],
        timedelta(days=body.horizon_days),
    )
    return SimulateOut(
        journey_id=journey_id, version=version, entered_at=result.entered_at, state=result.state,
        holdout=result.holdout, goal_at=result.goal_at,
        path=[TransitionOut(node_id=t.node_id, outcome=t.outcome, at=t.at) for t in result.steps],
        touches=[
            SimTouchOut(at=t.at, node_id=t.effect.node_id, touch_key=t.effect.touch_key, channels=t.effect.channels,
                        template_id=t.effect.template_id, priority=t.effect.priority, task=t.effect.task)
            for t in result.touches
        ],
        tags=[SimTagsOut(at=at, add=add, remove=remove) for at, add, remove in result.tags],
    )  # fmt: skip


@router.get("/playbooks", response_model=list[PlaybookOut])
async def list_playbooks(tenant: TenantDep, session: SessionDep) -> list[PlaybookOut]:
    """Built-in playbooks; ``installed`` when the tenant has its own copy."""
    mine = {v.journey_id for v in await JourneyAdmin(session, tenant.tenant_id, CLOCK.now()).list() if not v.built_in}
    return [
        PlaybookOut(name=p.name, summary=p.summary, default=p.default, installed=p.name in mine, definition=p.document)
        for p in PLAYBOOKS.values()
    ]


@router.post("/playbooks/{name}/install", response_model=JourneyOut, status_code=201)
async def install_playbook(name: str, tenant: TenantDep, session: SessionDep) -> JourneyOut:
    """Install a playbook as the tenant's journey ``name``: published and running, editable after."""
    return await _lifecycle("install", name, tenant.tenant_id, session)


@router.get("/customers/{customer_id}/journeys", response_model=CustomerJourneysOut)
async def customer_journeys(customer_id: str, tenant: TenantDep, session: SessionDep) -> CustomerJourneysOut:
    """Every journey instance of one customer, with the transitions it made."""
    found = await instances_of(session, tenant.tenant_id, customer_id=customer_id, limit=1000)
    return CustomerJourneysOut(customer_id=customer_id, instances=[_instance_out(i, m) for i, m in found])


def app() -> FastAPI:
    """ASGI factory: ``uvicorn --factory scrm_journey.entrypoints.api:app``."""
    settings = Settings()

    def runtime_factory():  # type: ignore[no-untyped-def]
        runtime = build_runtime(settings)
        application.state.notify = build_notify_client(settings)
        runtime.on_stop.append(application.state.notify.aclose)
        return runtime

    application = create_app(runtime_factory, title="SCRM journey", routers=[router] if "api" in settings.roles else [])
    return application
