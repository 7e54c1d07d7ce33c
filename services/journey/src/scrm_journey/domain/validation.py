"""Parse a journey definition (JSON or YAML) and check its graph, naming the node and field of every problem."""

from dataclasses import dataclass
from typing import Any

import orjson
import yaml
from pydantic import ValidationError

from scrm_contracts.rules import EventRule, Rule
from scrm_journey.domain.definition import (
    WAITING_NODES,
    ConditionNode,
    JourneyDefinition,
    SplitNode,
    successors,
)


@dataclass(frozen=True, slots=True)
class Problem:
    field: str
    message: str


class DefinitionError(ValueError):
    """A definition that cannot run; ``problems`` lists every reason with where it is."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{p.field}: {p.message}" for p in problems))
        self.problems = problems


def load_document(raw: bytes | str, content_type: str = "application/json") -> Any:
    """JSON, or YAML when the content type says so (YAML is a superset of JSON, so it also reads JSON)."""
    try:
        if "yaml" in content_type:
            return yaml.safe_load(raw)
        return orjson.loads(raw)
    except (yaml.YAMLError, orjson.JSONDecodeError) as exc:
        raise DefinitionError(
            [Problem("body", f"not valid {'YAML' if 'yaml' in content_type else 'JSON'}: {exc}")]
        ) from exc


def _path(loc: tuple[int | str, ...]) -> str:
    # Drop union tags pydantic adds (e.g. "send_touch") right after a node id, keep the real path.
    parts: list[str] = []
    for i, part in enumerate(loc):
        if i >= 2 and loc[0] == "nodes" and i == 2 and isinstance(part, str) and part in _NODE_TYPES:
            continue
        if i == 1 and loc[0] in ("trigger",) and isinstance(part, str) and part in _TRIGGER_TYPES:
            continue
        parts.append(str(part))
    return ".".join(parts) or "body"


_NODE_TYPES = {
    "wait",
    "wait_until_time",
    "wait_until_date",
    "wait_for_event",
    "condition",
    "split",
    "send_touch",
    "staff_task",
    "issue_coupon",
    "tag",
    "exit",
}
_TRIGGER_TYPES = {"event", "segment", "stage_changed", "tier_changed", "date", "festival"}


def _message(error: Any) -> str:
    if error["type"] in ("literal_error", "union_tag_invalid", "enum"):
        return f"unknown value {error['input']!r}: {error['msg']}"
    return str(error["msg"])


def parse_model(document: Any) -> JourneyDefinition:
    """Check a document's shape and values (not yet its graph); raises DefinitionError naming each bad field."""
    if not isinstance(document, dict):
        raise DefinitionError([Problem("body", "a journey definition is an object")])
    try:
        return JourneyDefinition.model_validate(document)
    except ValidationError as exc:
        raise DefinitionError([Problem(_path(tuple(e["loc"])), _message(e)) for e in exc.errors()[:20]]) from exc


def parse_definition(document: Any) -> JourneyDefinition:
    """Validate a definition document and its graph; raises DefinitionError naming each bad node and field.
    (Template ids are checked against notify by ``service.definitions``.)"""
    definition = parse_model(document)
    problems = graph_problems(definition)
    if problems:
        raise DefinitionError(problems)
    return definition


def _uses_events(rule: Rule) -> bool:
    from scrm_contracts.rules import uses_events

    return uses_events(rule) or isinstance(rule, EventRule)


def graph_problems(definition: JourneyDefinition) -> list[Problem]:
    """Dangling edges, unreachable nodes, loops without a wait, split weights, event counts in conditions."""
    nodes = definition.nodes
    problems: list[Problem] = []
    if definition.start not in nodes:
        problems.append(Problem("start", f"start node {definition.start!r} does not exist"))
    for node_id, node in nodes.items():
        for target in successors(node):
            if target is not None and target not in nodes:
                problems.append(Problem(f"nodes.{node_id}", f"edge to unknown node {target!r}"))
        if isinstance(node, SplitNode) and sum(b.weight for b in node.branches) != 100:
            total = sum(b.weight for b in node.branches)
            problems.append(Problem(f"nodes.{node_id}.branches", f"split weights sum to {total}, not 100"))
        if isinstance(node, ConditionNode) and _uses_events(node.rule):
            problems.append(
                Problem(f"nodes.{node_id}.rule", "event counts are not available in journeys: use wait_for_event")
            )
    if definition.reentry.policy == "after_days" and definition.reentry.days is None:
        problems.append(Problem("reentry.days", "policy after_days needs days"))
    if problems:
        return problems
    reachable = _reachable(definition)
    for node_id in nodes:
        if node_id not in reachable:
            problems.append(Problem(f"nodes.{node_id}", f"node {node_id!r} is unreachable from start"))
    loop = _loop_without_wait(definition)
    if loop:
        problems.append(Problem(f"nodes.{loop[0]}", f"loop without a wait: {' -> '.join(loop)}"))
    return problems


def _reachable(definition: JourneyDefinition) -> set[str]:
    seen: set[str] = set()
    stack = [definition.start]
    while stack:
        node_id = stack.pop()
        if node_id in seen:
            continue
        seen.add(node_id)
        stack.extend(t for t in successors(definition.nodes[node_id]) if t is not None)
    return seen


def _loop_without_wait(definition: JourneyDefinition) -> list[str] | None:
    """A cycle made only of nodes that do not wait (it would spin forever in one step)."""
    instant = {k for k, n in definition.nodes.items() if not isinstance(n, WAITING_NODES)}
    state: dict[str, int] = {}  # 1 = on the path, 2 = done

    def visit(node_id: str, path: list[str]) -> list[str] | None:
        state[node_id] = 1
        for target in successors(definition.nodes[node_id]):
            if target is None or target not in instant:
                continue
            if state.get(target) == 1:
                return [*path[path.index(target) :], target] if target in path else [node_id, target]
            if target not in state:
                found = visit(target, [*path, target])
                if found:
                    return found
        state[node_id] = 2
        return None

    for node_id in sorted(instant):
        if node_id not in state:
            found = visit(node_id, [node_id])
            if found:
                return found
    return None
