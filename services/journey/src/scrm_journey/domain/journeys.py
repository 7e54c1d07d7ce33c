"""Journey definitions and how a profile change enters a customer into one.

The walking skeleton ships one built-in journey, "welcome after first purchase": when a customer's lifecycle stage
becomes ``new`` (their first order), send a welcome touch. Later issues add the full node graph.
"""

from dataclasses import dataclass, field
from typing import Literal

from scrm_contracts import LifecycleStageChanged, ProfileChange


@dataclass(frozen=True, slots=True)
class StageEntered:
    """Trigger: the customer's lifecycle stage became ``to_stage``."""

    to_stage: str

    def matches(self, change: ProfileChange) -> bool:
        return isinstance(change, LifecycleStageChanged) and change.to_stage == self.to_stage


@dataclass(frozen=True, slots=True)
class SendTouch:
    node_id: str
    channels: tuple[str, ...]
    template_id: str
    priority: Literal["marketing", "transactional"] = "marketing"


@dataclass(frozen=True, slots=True)
class JourneyDefinition:
    journey_id: str
    version: int
    name: str
    trigger: StageEntered
    steps: tuple[SendTouch, ...] = field(default_factory=tuple)


WELCOME = JourneyDefinition(
    journey_id="welcome",
    version=1,
    name="Welcome after first purchase",
    trigger=StageEntered("new"),
    steps=(SendTouch("send_welcome", ("webhook",), "welcome", "transactional"),),
)

BUILT_IN: tuple[JourneyDefinition, ...] = (WELCOME,)


def journeys_entered(change: ProfileChange) -> list[JourneyDefinition]:
    """The journeys this change enters the customer into."""
    return [j for j in BUILT_IN if j.trigger.matches(change)]


def touch_key(instance_id: str, node_id: str, attempt: int = 1) -> str:
    """Idempotency key of one touch: (instance, node, attempt)."""
    return f"{instance_id}:{node_id}:{attempt}"
