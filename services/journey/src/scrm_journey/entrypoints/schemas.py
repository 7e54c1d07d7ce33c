"""Response and request bodies of the journey API."""

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from scrm_contracts import CustomerSnapshot, StaffTaskSpec


class TransitionOut(BaseModel):
    node_id: str
    outcome: str
    at: datetime


class InstanceOut(BaseModel):
    instance_id: str
    journey_id: str
    journey_version: int
    customer_id: str
    state: str
    current_node: str | None
    holdout: bool
    entered_at: datetime
    goal_at: datetime | None
    transitions: list[TransitionOut]


class CustomerJourneysOut(BaseModel):
    customer_id: str
    instances: list[InstanceOut]


class InstancesOut(BaseModel):
    journey_id: str
    instances: list[InstanceOut]


class JourneyOut(BaseModel):
    journey_id: str
    name: str
    status: str = Field(description="draft, active, paused or archived")
    version: int | None = Field(description="The published version new entries use")
    playbook: str | None
    built_in: bool = Field(description="A default playbook running without a tenant copy (edit or install it)")
    definition: dict[str, Any] = Field(description="The draft (what publish makes the next version)")
    created_at: datetime | None
    updated_at: datetime | None


class VersionOut(BaseModel):
    journey_id: str
    version: int
    definition: dict[str, Any] = Field(description="The published definition (immutable)")


class ProblemOut(BaseModel):
    field: str
    message: str


class ValidationOut(BaseModel):
    valid: bool
    errors: list[ProblemOut]


class PlaybookOut(BaseModel):
    name: str
    summary: str
    default: bool
    installed: bool
    definition: dict[str, Any]


class NodeCount(BaseModel):
    node_id: str
    type: str
    current: int = Field(description="Instances at this node now")
    passed: int = Field(description="Instances that went through this node")


class GroupOut(BaseModel):
    entered: int
    converted: int
    rate: float | None


class GoalOut(BaseModel):
    event: str | None
    treatment: GroupOut
    holdout: GroupOut
    overall: GroupOut
    uplift: float | None = Field(description="Treatment rate minus holdout rate; null without a holdout")


class StatsOut(BaseModel):
    journey_id: str
    version: int | None
    status: str
    entered: int
    states: dict[str, int]
    nodes: list[NodeCount]
    goal: GoalOut


class SimEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    event: str = Field(min_length=1, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict)


class SimTaskOutcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at: datetime
    status: Literal["completed", "expired"]


class SimulateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    profile: CustomerSnapshot = Field(default_factory=CustomerSnapshot, description="The customer, as profile shows it")
    start_at: datetime | None = Field(default=None, description="Virtual start time (default: now)")
    events: list[SimEvent] = Field(default_factory=list, description="What the customer does, and when")
    task_outcomes: list[SimTaskOutcome] = Field(default_factory=list, description="Staff task outcomes, in order")
    version: int | None = Field(default=None, description="A published version (default: the newest, else draft)")
    draft: bool = Field(default=False, description="Simulate the draft instead of a published version")
    horizon_days: int = Field(default=400, ge=1, le=3650)


class SimTouchOut(BaseModel):
    at: datetime
    node_id: str
    touch_key: str
    channels: list[str]
    template_id: str
    priority: str
    task: StaffTaskSpec | None


class SimTagsOut(BaseModel):
    at: datetime
    add: list[str]
    remove: list[str]


class SimulateOut(BaseModel):
    journey_id: str
    version: int | None
    entered_at: datetime | None
    state: str
    holdout: bool
    goal_at: datetime | None
    path: list[TransitionOut]
    touches: list[SimTouchOut]
    tags: list[SimTagsOut]
