"""Run one journey for one customer profile on a virtual clock: the path it would take, with every touch."""

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from scrm_journey.domain.definition import JourneyDefinition
from scrm_journey.domain.engine import (
    EventSeen,
    Instance,
    Runner,
    Signal,
    TaskOutcome,
    TimerFired,
    TouchEffect,
    Transition,
    goal_or_exit,
    within_goal_window,
)
from scrm_journey.domain.triggers import is_dated, next_entry


@dataclass(frozen=True, slots=True)
class ScriptedEvent:
    at: datetime
    event: str
    properties: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ScriptedTaskOutcome:
    at: datetime
    status: str  # completed | expired


@dataclass
class SimulatedTouch:
    at: datetime
    effect: TouchEffect


@dataclass
class Simulation:
    entered_at: datetime | None
    state: str
    steps: list[Transition] = field(default_factory=list)
    touches: list[SimulatedTouch] = field(default_factory=list)
    tags: list[tuple[datetime, list[str], list[str]]] = field(default_factory=list)
    goal_at: datetime | None = None
    holdout: bool = False


def simulate(
    definition: JourneyDefinition,
    facts: dict[str, Any],
    start_at: datetime,
    events: list[ScriptedEvent],
    outcomes: list[ScriptedTaskOutcome],
    horizon: timedelta = timedelta(days=400),
) -> Simulation:
    """Enter at ``start_at`` (or the date trigger's next moment), then follow timers and scripted inputs in order."""
    entered_at = next_entry(definition, facts, start_at) if is_dated(definition) else start_at
    if entered_at is None:
        return Simulation(entered_at=None, state="not entered")
    instance = Instance("sim", "sim", "sim", "sim", 1, entered_at, user_id=facts.get("user_id"))
    result = Simulation(entered_at=entered_at, state="active")
    wake = _record(result, Runner(definition, instance, facts, entered_at).start(), entered_at)
    inputs: list[tuple[datetime, Signal]] = sorted(
        [(e.at, EventSeen(e.event, e.properties)) for e in events if e.at >= entered_at]
        + [(o.at, TaskOutcome("", o.status)) for o in outcomes if o.at >= entered_at],
        key=lambda pair: pair[0],
    )
    end = entered_at + horizon
    while instance.state == "waiting":
        if inputs and (wake is None or inputs[0][0] <= wake):
            now, signal = inputs.pop(0)
        elif wake is not None and wake <= end:
            now, signal = wake, TimerFired()
        else:
            break
        runner = Runner(definition, instance, facts, now)
        if isinstance(signal, EventSeen) and _goal_or_exit(definition, instance, signal, now, result, runner):
            continue
        if isinstance(signal, TaskOutcome):
            signal = TaskOutcome(instance.context.get("awaiting_touch", ""), signal.status)
        step = runner.resume(signal)
        if step.transitions:
            wake = _record(result, step, now)
    for now, signal in inputs:  # after the path ended, the goal still counts within its window
        if instance.state == "completed" and isinstance(signal, EventSeen):
            _goal_or_exit(definition, instance, signal, now, result, Runner(definition, instance, facts, now))
    result.state, result.holdout, result.goal_at = instance.state, instance.holdout, instance.goal_at
    return result


def _goal_or_exit(
    definition: JourneyDefinition,
    instance: Instance,
    signal: EventSeen,
    now: datetime,
    result: Simulation,
    runner: Runner,
) -> bool:
    verdict = goal_or_exit(definition, instance, signal.event, signal.properties)
    if verdict == "goal" and within_goal_window(definition, instance, now):
        instance.goal_at = now
        if definition.goal is not None and definition.goal.exit_on_goal and instance.state == "waiting":
            _record(result, runner.finish("converted", "goal reached"), now)
            return True
    if verdict == "exit" and instance.state == "waiting":
        _record(result, runner.finish("exited", f"exit on {signal.event}"), now)
        return True
    return False


def _record(result: Simulation, step: Any, now: datetime) -> datetime | None:
    result.steps += step.transitions
    result.touches += [SimulatedTouch(now, t) for t in step.touches]
    result.tags += [(now, t.add, t.remove) for t in step.tags]
    return step.wake_at
