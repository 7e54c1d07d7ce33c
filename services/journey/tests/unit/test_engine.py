"""Every node type on a virtual clock, through the simulator (the same Runner the engine uses)."""

from datetime import UTC, datetime, timedelta
from typing import Any

from scrm_contracts import CustomerSnapshot
from scrm_journey.domain.engine import Instance, Runner, TimerFired, split_bucket
from scrm_journey.domain.simulate import ScriptedEvent, ScriptedTaskOutcome, Simulation, simulate
from scrm_journey.domain.validation import parse_definition

T0 = datetime(2031, 3, 2, 1, 0, tzinfo=UTC)  # 09:00 in Shanghai


def facts(**fields: Any) -> dict[str, Any]:
    return CustomerSnapshot(**fields).model_dump(mode="json")


def run(nodes: dict[str, Any], profile: dict[str, Any] | None = None, **kwargs: Any) -> Simulation:
    events = kwargs.pop("events", [])
    outcomes = kwargs.pop("outcomes", [])
    document = {"name": "t", "trigger": {"type": "event", "event": "Go"}, "start": "a", "nodes": nodes, **kwargs}
    return simulate(parse_definition(document), profile or facts(), T0, events, outcomes)


def path(result: Simulation) -> list[str]:
    return [f"{t.node_id}:{t.outcome}" for t in result.steps]


def test_wait_duration_then_touch_at_the_right_moment() -> None:
    result = run(
        {
            "a": {"type": "wait", "duration": {"days": 3, "hours": 2}, "next": "b"},
            "b": {"type": "send_touch", "channels": ["wecom", "sms"], "template_id": "hi", "priority": "marketing"},
        }
    )
    assert result.state == "completed"
    assert [(t.at, t.effect.channels, t.effect.template_id) for t in result.touches] == [
        (T0 + timedelta(days=3, hours=2), ["wecom", "sms"], "hi")
    ]
    assert result.touches[0].effect.touch_key == "sim:b:1"


def test_wait_until_time_of_day_uses_the_customers_time_zone() -> None:
    nodes = {"a": {"type": "wait_until_time", "at": "08:00", "next": "b"},
             "b": {"type": "send_touch", "channels": ["sms"], "template_id": "t"}}  # fmt: skip
    shanghai = run(nodes)  # 09:00 there: tomorrow 08:00 local = 00:00 UTC
    assert shanghai.touches[0].at == datetime(2031, 3, 3, 0, 0, tzinfo=UTC)
    new_york = run(nodes, facts(timezone="America/New_York"))  # 20:00 the day before there
    assert new_york.touches[0].at == datetime(2031, 3, 2, 13, 0, tzinfo=UTC)


def test_wait_until_date_and_a_date_already_passed() -> None:
    nodes = {"a": {"type": "wait_until_date", "until": "2031-06-18", "at_time": "10:00", "next": "b"},
             "b": {"type": "send_touch", "channels": ["sms"], "template_id": "t"}}  # fmt: skip
    assert run(nodes).touches[0].at == datetime(2031, 6, 18, 2, 0, tzinfo=UTC)
    nodes["a"]["until"] = "2030-01-01"
    passed = run(nodes)
    assert passed.touches[0].at == T0 and "a:date already passed" in path(passed)


def test_wait_for_event_branches_on_the_event_or_the_timeout() -> None:
    nodes = {
        "a": {"type": "wait_for_event", "event": "Message Clicked", "where": {"channel": "wecom"},
              "timeout": {"days": 3}, "on_event": "thanks", "on_timeout": "reminder"},
        "thanks": {"type": "send_touch", "channels": ["wecom"], "template_id": "thanks"},
        "reminder": {"type": "send_touch", "channels": ["sms"], "template_id": "reminder"},
    }  # fmt: skip
    clicked = run(nodes, events=[ScriptedEvent(T0 + timedelta(days=1), "Message Clicked", {"channel": "wecom"})])
    assert [t.effect.template_id for t in clicked.touches] == ["thanks"]
    other_channel = run(nodes, events=[ScriptedEvent(T0 + timedelta(days=1), "Message Clicked", {"channel": "sms"})])
    assert [(t.at, t.effect.template_id) for t in other_channel.touches] == [(T0 + timedelta(days=3), "reminder")]
    too_late = run(nodes, events=[ScriptedEvent(T0 + timedelta(days=4), "Message Clicked", {"channel": "wecom"})])
    assert [t.effect.template_id for t in too_late.touches] == ["reminder"]


def test_condition_uses_the_shared_rule_language_on_the_snapshot() -> None:
    nodes = {
        "a": {"type": "condition", "rule": {"all": [{"field": "revenue_total", "op": "gte", "value": 500},
                                                    {"not": {"field": "tags", "op": "contains", "value": "opt-out"}}]},
              "then": "vip", "else": "std"},
        "vip": {"type": "send_touch", "channels": ["wecom"], "template_id": "vip"},
        "std": {"type": "send_touch", "channels": ["sms"], "template_id": "std"},
    }  # fmt: skip
    assert run(nodes, facts(revenue_total="800")).touches[0].effect.template_id == "vip"
    assert run(nodes, facts(revenue_total="800", tags=["opt-out"])).touches[0].effect.template_id == "std"
    assert run(nodes, facts(revenue_total="20")).touches[0].effect.template_id == "std"


def test_random_split_follows_weights_and_holdout_gets_no_touch_but_reaches_the_goal() -> None:
    definition = parse_definition(
        {
            "name": "t", "trigger": {"type": "event", "event": "Go"}, "start": "a",
            "nodes": {
                "a": {"type": "split", "branches": [{"name": "test", "weight": 80, "next": "b"},
                                                    {"name": "control", "weight": 20, "next": "b", "holdout": True}]},
                "b": {"type": "send_touch", "channels": ["sms"], "template_id": "offer", "next": "c"},
                "c": {"type": "wait", "duration": {"days": 10}},
            },
            "goal": {"event": "Order Completed", "within_days": 7},
        }
    )  # fmt: skip
    held, touched = 0, 0
    for n in range(1000):
        instance = Instance(f"ji_{n}", "t", f"c{n}", "j", 1, T0)
        step = Runner(definition, instance, facts(), T0).start()
        if instance.holdout:
            held += 1
            assert step.touches == [] and any("held out" in t.outcome for t in step.transitions)
        else:
            touched += 1
            assert len(step.touches) == 1
    assert 140 <= held <= 260 and held + touched == 1000
    assert split_bucket("ji_1", "a") == split_bucket("ji_1", "a")
    order = [ScriptedEvent(T0 + timedelta(days=2), "Order Completed")]
    result = simulate(definition, facts(), T0, order, [])
    assert result.state == "converted" and result.goal_at == T0 + timedelta(days=2)


def test_staff_task_completed_or_expired_or_timed_out() -> None:
    nodes = {
        "a": {"type": "staff_task", "title": "Call them", "suggested_words": "Hello!", "timeout": {"days": 2},
              "on_completed": None, "on_expired": "fallback"},
        "fallback": {"type": "send_touch", "channels": ["wecom"], "template_id": "auto_care"},
    }  # fmt: skip
    owner = facts(owner_staff_id="staff-7")
    done = run(nodes, owner, outcomes=[ScriptedTaskOutcome(T0 + timedelta(hours=5), "completed")])
    assert [t.effect.channels for t in done.touches] == [["staff_task"]]
    task = done.touches[0].effect.task
    assert task is not None and task.staff_id == "staff-7" and task.suggested_words == "Hello!"
    assert task.due_at == T0 + timedelta(days=2)
    expired = run(nodes, owner, outcomes=[ScriptedTaskOutcome(T0 + timedelta(hours=5), "expired")])
    assert [t.effect.template_id for t in expired.touches] == ["staff_task", "auto_care"]
    silent = run(nodes, owner)
    assert [(t.at, t.effect.template_id) for t in silent.touches][-1] == (T0 + timedelta(days=2), "auto_care")
    assert "a:task timed out" in path(silent)


def test_coupon_tags_and_exit() -> None:
    nodes = {
        "a": {"type": "issue_coupon", "coupon_id": "c-10", "channels": ["wechat_oa"], "next": "b"},
        "b": {"type": "tag", "add": ["coupon-sent"], "remove": ["cold"], "next": "c"},
        "c": {"type": "exit"},
    }
    result = run(nodes, goal={"event": "Coupon Redeemed", "where": {"coupon_id": "c-10"}})
    assert result.touches[0].effect.variables["coupon_id"] == "c-10"
    assert result.tags == [(T0, ["coupon-sent"], ["cold"])]
    assert path(result)[-1] == "c:exit" and result.state == "completed"


def test_goal_and_exit_rules_end_a_waiting_instance() -> None:
    nodes = {"a": {"type": "wait", "duration": {"days": 10}, "next": "b"},
             "b": {"type": "send_touch", "channels": ["sms"], "template_id": "nudge"}}  # fmt: skip
    bought = [ScriptedEvent(T0 + timedelta(days=1), "Order Completed")]
    exited = run(nodes, exit_when=[{"event": "Order Completed"}], events=bought)
    assert exited.state == "exited" and exited.touches == []
    late_goal = run(nodes, goal={"event": "Order Completed", "within_days": 1},
                    events=[ScriptedEvent(T0 + timedelta(days=2), "Order Completed")])  # fmt: skip
    assert late_goal.goal_at is None and late_goal.state == "completed"


def test_a_timer_for_a_node_no_longer_waiting_changes_nothing() -> None:
    definition = parse_definition(
        {"name": "t", "trigger": {"type": "event", "event": "Go"}, "start": "a",
         "nodes": {"a": {"type": "send_touch", "channels": ["sms"], "template_id": "t"}}}
    )  # fmt: skip
    instance = Instance("ji", "t", "c", "j", 1, T0)
    Runner(definition, instance, facts(), T0).start()
    assert instance.state == "completed"
    assert Runner(definition, instance, facts(), T0).resume(TimerFired()).transitions == []


def test_the_goal_counts_within_its_window_after_the_path_ended() -> None:
    nodes = {"a": {"type": "send_touch", "channels": ["sms"], "template_id": "t"}}
    goal = {"event": "Order Completed", "within_days": 7}
    in_time = run(nodes, goal=goal, events=[ScriptedEvent(T0 + timedelta(days=6), "Order Completed")])
    assert in_time.state == "completed" and in_time.goal_at == T0 + timedelta(days=6)
    too_late = run(nodes, goal=goal, events=[ScriptedEvent(T0 + timedelta(days=8), "Order Completed")])
    assert too_late.goal_at is None


def test_a_task_outcome_held_while_paused_decides_when_the_timer_fires() -> None:
    from scrm_journey.domain.engine import TaskOutcome

    document = {
        "name": "t", "trigger": {"type": "event", "event": "Go"}, "start": "call",
        "nodes": {"call": {"type": "staff_task", "title": "Call", "timeout": {"days": 2}, "on_completed": None,
                           "on_expired": "auto"},
                  "auto": {"type": "send_touch", "channels": ["sms"], "template_id": "auto"}},
    }  # fmt: skip
    definition = parse_definition(document)
    instance = Instance("ji_1", "t", "c", "j", 1, T0)
    Runner(definition, instance, facts(), T0).start()
    key = instance.context["awaiting_touch"]
    other = TaskOutcome("someone-else:call:1", "completed")
    assert Runner(definition, instance, facts(), T0).hold(other).transitions == []
    held = Runner(definition, instance, facts(), T0).hold(TaskOutcome(key, "completed"))
    assert [t.outcome for t in held.transitions] == ["task completed while paused (held)"]
    assert instance.state == "waiting" and held.touches == []
    step = Runner(definition, instance, facts(), T0 + timedelta(days=3)).resume(TimerFired())
    assert [t.outcome for t in step.transitions] == ["task completed", "completed"]
    assert step.touches == [] and instance.state == "completed" and "held" not in instance.context
