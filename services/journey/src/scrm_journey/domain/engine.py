"""The journey state machine, pure: given an instance, its definition, the customer and the time, what happens next.

An instance runs node to node until a node waits (a timer, an event, a staff task's outcome) or the path ends.
The result lists every transition and every effect (touch requests, tag changes) plus the timer to set; the
service layer persists them in one transaction, and the simulator replays them on a virtual clock.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from scrm_contracts import StaffTaskSpec
from scrm_contracts.rules import evaluate
from scrm_journey.domain.calendar import at_local, next_time_of_day, zone
from scrm_journey.domain.definition import (
    ConditionNode,
    ExitNode,
    IssueCouponNode,
    JourneyDefinition,
    SendTouchNode,
    SplitNode,
    StaffTaskNode,
    TagNode,
    WaitForEventNode,
    WaitNode,
    WaitUntilDateNode,
    WaitUntilTimeNode,
)

MAX_STEPS = 200


@dataclass
class Instance:
    instance_id: str
    tenant_id: str
    customer_id: str
    journey_id: str
    journey_version: int
    entered_at: datetime
    user_id: str | None = None
    state: str = "active"  # active, waiting, completed, exited
    current_node: str | None = None
    holdout: bool = False
    context: dict[str, Any] = field(default_factory=dict)
    goal_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Transition:
    node_id: str
    outcome: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TouchEffect:
    node_id: str
    touch_key: str
    channels: list[str]
    template_id: str
    priority: str
    variables: dict[str, Any]
    task: StaffTaskSpec | None = None


@dataclass(frozen=True, slots=True)
class TagEffect:
    node_id: str
    key: str
    add: list[str]
    remove: list[str]


@dataclass
class Step:
    transitions: list[Transition] = field(default_factory=list)
    touches: list[TouchEffect] = field(default_factory=list)
    tags: list[TagEffect] = field(default_factory=list)
    wake_at: datetime | None = None  # the timer to (re)set; None clears it


@dataclass(frozen=True, slots=True)
class TimerFired:
    pass


@dataclass(frozen=True, slots=True)
class EventSeen:
    event: str
    properties: dict[str, Any]


@dataclass(frozen=True, slots=True)
class TaskOutcome:
    touch_key: str
    status: str  # completed | expired


Signal = TimerFired | EventSeen | TaskOutcome
HELD = "held"  # instance context key: the signal that arrived while the journey was paused


def _signal_of(held: dict[str, Any]) -> EventSeen | TaskOutcome:
    if "event" in held:
        return EventSeen(held["event"], held.get("properties") or {})
    return TaskOutcome(held["touch_key"], held["status"])


def touch_key(instance_id: str, node_id: str, attempt: int = 1) -> str:
    """Idempotency key of one touch: (instance, node, attempt)."""
    return f"{instance_id}:{node_id}:{attempt}"


def split_bucket(instance_id: str, node_id: str) -> int:
    """A stable number 0..99 per instance and split node, so a replay picks the same branch."""
    return int.from_bytes(hashlib.sha256(f"{instance_id}/{node_id}".encode()).digest()[:8], "big") % 100


class Runner:
    """Walks one instance through its definition."""

    def __init__(self, definition: JourneyDefinition, instance: Instance, facts: dict[str, Any], now: datetime):
        self.definition = definition
        self.instance = instance
        self.facts = facts
        self.now = now
        self.step = Step()
        self.tz = zone(facts.get("timezone"), definition.timezone)

    def start(self) -> Step:
        self._note("entry", "entered")
        self._run(self.definition.start)
        return self.step

    def resume(self, signal: Signal) -> Step:
        """Continue a waiting instance after its timer, an event, or a staff task's outcome."""
        inst = self.instance
        if inst.state != "waiting" or inst.current_node not in self.definition.nodes:
            return self.step
        node = self.definition.nodes[inst.current_node]
        node_id = inst.current_node
        if isinstance(signal, TimerFired) and HELD in inst.context:
            # It arrived while the journey was paused: it, not the timeout, decides where the instance goes.
            self._apply(node_id, node, _signal_of(inst.context[HELD]))
            if self.step.transitions:
                return self.step
            inst.context.pop(HELD)
        return self._apply(node_id, node, signal)

    def _apply(self, node_id: str, node: Any, signal: Signal) -> Step:
        inst = self.instance
        if isinstance(signal, TimerFired):
            if isinstance(node, WaitForEventNode):
                self._note(node_id, f"no {node.event} in time")
                return self._continue(node.on_timeout)
            if isinstance(node, StaffTaskNode):
                self._note(node_id, "task timed out")
                return self._continue(node.on_expired)
            self._note(node_id, "waited")
            return self._continue(getattr(node, "next", None))
        if isinstance(signal, EventSeen) and isinstance(node, WaitForEventNode):
            if node.matches(signal.event, signal.properties):
                self._note(node_id, f"{node.event} seen")
                return self._continue(node.on_event)
        if isinstance(signal, TaskOutcome) and isinstance(node, StaffTaskNode):
            if signal.touch_key == inst.context.get("awaiting_touch"):
                self._note(node_id, f"task {signal.status}")
                return self._continue(node.on_completed if signal.status == "completed" else node.on_expired)
        return self.step

    def hold(self, signal: EventSeen | TaskOutcome) -> Step:
        """The journey is paused: remember the first signal that would move the instance on (no step is taken).
        When the journey resumes, the instance's timer fires at once and the held signal moves it."""
        inst = self.instance
        if inst.state != "waiting" or HELD in inst.context or inst.current_node not in self.definition.nodes:
            return self.step
        node_id, node = inst.current_node, self.definition.nodes[inst.current_node]
        if isinstance(signal, EventSeen) and isinstance(node, WaitForEventNode):
            if node.matches(signal.event, signal.properties):
                inst.context[HELD] = {"event": signal.event, "properties": signal.properties}
                self._note(node_id, f"{node.event} seen while paused (held)")
        elif isinstance(signal, TaskOutcome) and isinstance(node, StaffTaskNode):
            if signal.touch_key == inst.context.get("awaiting_touch"):
                inst.context[HELD] = {"touch_key": signal.touch_key, "status": signal.status}
                self._note(node_id, f"task {signal.status} while paused (held)")
        return self.step

    def finish(self, state: str, outcome: str) -> Step:
        """End the instance from outside (goal reached, exit rule, archive, merge)."""
        self._note(self.instance.current_node or "exit", outcome)
        self.instance.state = state
        self.step.wake_at = None
        return self.step

    def _continue(self, target: str | None) -> Step:
        self.instance.context.pop("awaiting_touch", None)
        self.instance.context.pop(HELD, None)
        self._run(target)
        return self.step

    def _note(self, node_id: str, outcome: str) -> None:
        self.step.transitions.append(Transition(node_id, outcome, self.now))

    def _run(self, node_id: str | None) -> None:
        for _ in range(MAX_STEPS):
            if node_id is None:
                self._end("completed", "completed")
                return
            node = self.definition.nodes[node_id]
            self.instance.current_node = node_id
            if isinstance(node, ExitNode):
                self._end("completed", "exit")
                return
            following = self._visit(node_id, node)
            if following is _WAIT:
                return
            node_id = following  # type: ignore[assignment]
        self._end("exited", "too many steps without a wait")

    def _end(self, state: str, outcome: str) -> None:
        self.instance.state = state
        self._note("end" if outcome == "completed" else self.instance.current_node or "end", outcome)
        self.step.wake_at = None

    def _wait_until(self, node_id: str, moment: datetime, outcome: str) -> object:
        self.instance.state = "waiting"
        self.step.wake_at = moment
        self._note(node_id, f"{outcome} until {moment.isoformat()}")
        return _WAIT

    def _visit(self, node_id: str, node: Any) -> object:  # noqa: C901 - one case per node type
        if isinstance(node, WaitNode):
            return self._wait_until(node_id, self.now + node.duration.delta(), "waiting")
        if isinstance(node, WaitUntilTimeNode):
            return self._wait_until(node_id, next_time_of_day(self.now, node.at, self.tz), "waiting")
        if isinstance(node, WaitUntilDateNode):
            until = node.until
            moment = until if isinstance(until, datetime) else at_local(until, node.at_time, self.tz)
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=self.tz)
            if moment <= self.now:
                self._note(node_id, "date already passed")
                return node.next
            return self._wait_until(node_id, moment, "waiting")
        if isinstance(node, WaitForEventNode):
            return self._wait_until(node_id, self.now + node.timeout.delta(), f"waiting for {node.event}")
        if isinstance(node, ConditionNode):
            matched = evaluate(node.rule, self.facts, self.now)
            self._note(node_id, "condition true" if matched else "condition false")
            return node.then if matched else node.else_
        if isinstance(node, SplitNode):
            return self._split(node_id, node)
        if isinstance(node, SendTouchNode | IssueCouponNode):
            return self._touch(node_id, node)
        if isinstance(node, StaffTaskNode):
            return self._staff_task(node_id, node)
        if isinstance(node, TagNode):
            key = touch_key(self.instance.instance_id, node_id, self._attempt(node_id))
            self.step.tags.append(TagEffect(node_id, key, list(node.add), list(node.remove)))
            self._note(node_id, "tags changed")
            return node.next
        raise ValueError(f"unknown node type at {node_id}")

    def _attempt(self, node_id: str) -> int:
        attempts: dict[str, int] = self.instance.context.setdefault("attempts", {})
        attempts[node_id] = attempts.get(node_id, 0) + 1
        return attempts[node_id]

    def _split(self, node_id: str, node: SplitNode) -> str | None:
        bucket = split_bucket(self.instance.instance_id, node_id)
        edge = 0
        for index, branch in enumerate(node.branches):
            edge += branch.weight
            if bucket < edge:
                if branch.holdout:
                    self.instance.holdout = True
                self._note(node_id, f"branch {branch.name or index}{' (holdout)' if branch.holdout else ''}")
                return branch.next
        return node.branches[-1].next

    def _variables(self, extra: dict[str, Any]) -> dict[str, Any]:
        base = {"customer_id": self.instance.customer_id, "user_id": self.instance.user_id}
        return {**base, "journey_id": self.instance.journey_id, **extra}

    def _touch(self, node_id: str, node: SendTouchNode | IssueCouponNode) -> str | None:
        if self.instance.holdout:
            self._note(node_id, "held out (no touch)")
            return node.next
        key = touch_key(self.instance.instance_id, node_id, self._attempt(node_id))
        variables = dict(node.variables) if isinstance(node, SendTouchNode) else {"coupon_id": node.coupon_id}
        if isinstance(node, IssueCouponNode):
            self.instance.context.setdefault("coupons", []).append(node.coupon_id)
        effect = TouchEffect(
            node_id, key, list(node.channels), node.template_id, node.priority, self._variables(variables)
        )
        self.step.touches.append(effect)
        self._note(node_id, "coupon issued" if isinstance(node, IssueCouponNode) else "touch requested")
        return node.next

    def _staff_task(self, node_id: str, node: StaffTaskNode) -> object:
        if self.instance.holdout:
            self._note(node_id, "held out (no task)")
            return node.on_completed
        key = touch_key(self.instance.instance_id, node_id, self._attempt(node_id))
        due = self.now + node.timeout.delta()
        task = StaffTaskSpec(
            staff_id=node.staff_id or self.facts.get("owner_staff_id"),
            title=node.title,
            suggested_words=node.suggested_words,
            due_at=due,
        )
        variables = self._variables({"title": node.title})
        self.step.touches.append(
            TouchEffect(node_id, key, ["staff_task"], node.template_id, "marketing", variables, task)
        )
        self.instance.context["awaiting_touch"] = key
        return self._wait_until(node_id, due, "task created, waiting")


_WAIT = object()


def goal_or_exit(
    definition: JourneyDefinition, instance: Instance, event: str, properties: dict[str, Any]
) -> str | None:
    """Whether an event reaches the journey's goal (``goal``) or one of its exit rules (``exit``)."""
    goal = definition.goal
    if goal is not None and goal.matches(event, properties) and instance.goal_at is None:
        return "goal"
    if any(rule.matches(event, properties) for rule in definition.exit_when):
        return "exit"
    return None


def within_goal_window(definition: JourneyDefinition, instance: Instance, at: datetime) -> bool:
    goal = definition.goal
    if goal is None:
        return False
    return goal.within_days is None or at <= instance.entered_at + timedelta(days=goal.within_days)
