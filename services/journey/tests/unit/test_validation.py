"""Journey definitions: what a valid one looks like, and clear errors naming the node and field otherwise."""

from typing import Any

import pytest

from scrm_journey.domain.validation import DefinitionError, load_document, parse_definition


def journey(nodes: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"name": "t", "trigger": {"type": "event", "event": "Signed Up"}, "start": "a", "nodes": nodes, **extra}


def problems(document: Any) -> dict[str, str]:
    with pytest.raises(DefinitionError) as caught:
        parse_definition(document)
    return {p.field: p.message for p in caught.value.problems}


def test_a_valid_definition_parses_from_json_and_yaml() -> None:
    yaml_text = """
name: Welcome
trigger: {type: stage_changed, to_stage: new}
start: hello
nodes:
  hello: {type: send_touch, channels: [wecom, sms], template_id: welcome, next: wait}
  wait: {type: wait, duration: {days: 3}, next: null}
"""
    from_yaml = parse_definition(load_document(yaml_text, "application/yaml"))
    from_json = parse_definition(load_document(b'{"name": "Welcome", "trigger": {"type": "stage_changed", '
                                               b'"to_stage": "new"}, "start": "hello", "nodes": {"hello": '
                                               b'{"type": "send_touch", "channels": ["wecom", "sms"], '
                                               b'"template_id": "welcome", "next": "wait"}, "wait": {"type": "wait",'
                                               b' "duration": {"days": 3}, "next": null}}}'))  # fmt: skip
    assert from_yaml == from_json
    assert from_yaml.nodes["hello"].channels == ["wecom", "sms"]  # type: ignore[union-attr]


def test_dangling_edge_names_the_node() -> None:
    found = problems(journey({"a": {"type": "tag", "add": ["x"], "next": "nowhere"}}))
    assert found == {"nodes.a": "edge to unknown node 'nowhere'"}


def test_unreachable_node_is_reported() -> None:
    found = problems(journey({"a": {"type": "exit"}, "orphan": {"type": "exit"}}))
    assert found == {"nodes.orphan": "node 'orphan' is unreachable from start"}


def test_loop_without_a_wait_is_refused_but_a_loop_with_one_is_fine() -> None:
    spin = {"a": {"type": "tag", "add": ["x"], "next": "b"}, "b": {"type": "tag", "remove": ["x"], "next": "a"}}
    assert problems(journey(spin)) == {"nodes.a": "loop without a wait: a -> b -> a"}
    paced = {**spin, "b": {"type": "wait", "duration": {"days": 30}, "next": "a"}}
    assert parse_definition(journey(paced)).start == "a"


def test_unknown_channel_names_node_and_field() -> None:
    found = problems(journey({"a": {"type": "send_touch", "channels": ["fax"], "template_id": "t"}}))
    assert list(found) == ["nodes.a.channels.0"]
    assert "'fax'" in found["nodes.a.channels.0"] and "wecom" in found["nodes.a.channels.0"]


def test_split_weights_must_sum_to_100() -> None:
    split = {"type": "split", "branches": [{"weight": 50, "next": None}, {"weight": 40, "holdout": True}]}
    assert problems(journey({"a": split})) == {"nodes.a.branches": "split weights sum to 90, not 100"}


def test_missing_start_unknown_node_type_and_bad_yaml() -> None:
    assert problems(journey({"b": {"type": "exit"}}))["start"] == "start node 'a' does not exist"
    assert "nodes.a" in next(iter(problems(journey({"a": {"type": "teleport"}}))))
    with pytest.raises(DefinitionError) as caught:
        load_document("name: [unclosed", "application/yaml")
    assert caught.value.problems[0].field == "body"


def test_after_days_reentry_needs_days_and_conditions_cannot_count_events() -> None:
    found = problems(
        journey(
            {"a": {"type": "condition", "rule": {"event": "Order Completed", "min_count": 2}, "then": None}},
            reentry={"policy": "after_days"},
        )
    )
    assert set(found) == {"nodes.a.rule", "reentry.days"}
