"""The built-in playbooks against scripted customer histories (simulated on a virtual clock)."""

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from scrm_contracts import CustomerSnapshot
from scrm_journey.domain.playbooks import PLAYBOOKS
from scrm_journey.domain.simulate import ScriptedEvent, ScriptedTaskOutcome, simulate

T0 = datetime(2031, 3, 2, 1, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def facts(**fields: Any) -> dict[str, Any]:
    return CustomerSnapshot(**fields).model_dump(mode="json")


def templates(result: Any) -> list[str]:
    return [t.effect.template_id for t in result.touches]


@pytest.mark.parametrize("name", sorted(PLAYBOOKS))
def test_every_playbook_is_a_valid_definition(name: str) -> None:
    assert PLAYBOOKS[name].definition.nodes


def test_welcome_sends_one_transactional_webhook_touch() -> None:
    result = simulate(PLAYBOOKS["welcome"].definition, facts(lifecycle_stage="new"), T0, [], [])
    assert [(t.effect.channels, t.effect.template_id, t.effect.priority) for t in result.touches] == [
        (["webhook"], "welcome", "transactional")
    ]
    assert result.state == "completed"


def test_first_three_purchases_nudges_the_second_and_stops_after_the_third() -> None:
    definition = PLAYBOOKS["first_three_purchases"].definition
    never_again = simulate(definition, facts(orders_count=1), T0, [], [])
    assert templates(never_again) == ["nurture_value_content", "nudge_second_order"]
    assert never_again.touches[1].effect.variables["coupon_id"] == "second-order"
    loyal = [ScriptedEvent(T0 + 5 * DAY, "Order Completed"), ScriptedEvent(T0 + 12 * DAY, "Order Completed")]
    result = simulate(definition, facts(orders_count=1), T0, loyal, [])
    assert templates(result) == ["nurture_value_content", "nurture_value_content_2"]
    assert result.goal_at == T0 + 5 * DAY and result.state == "completed"
    second_only = simulate(definition, facts(orders_count=1), T0, loyal[:1], [])
    assert templates(second_only)[-1] == "nudge_third_order"


@pytest.mark.parametrize(
    ("stage", "expected", "tags"),
    [
        ("active", ["care_value_content"], []),
        ("silent", ["light_promotion"], []),
        ("sleeping", ["win_back_offer"], []),
        ("churned", [], [["major-sales-only"]]),
    ],
)
def test_lifecycle_care_by_stage(stage: str, expected: list[str], tags: list[list[str]]) -> None:
    result = simulate(PLAYBOOKS["lifecycle_care"].definition, facts(lifecycle_stage=stage), T0, [], [])
    assert templates(result) == expected
    assert [added for _, added, _ in result.tags] == tags


def test_high_value_care_is_staff_tasks_about_six_times_a_year() -> None:
    definition = PLAYBOOKS["high_value_care"].definition
    outcomes = [ScriptedTaskOutcome(T0 + timedelta(days=64 * n + 1), "completed") for n in range(6)]
    result = simulate(definition, facts(tier="dt", owner_staff_id="s-1"), T0, [], outcomes, timedelta(days=365))
    tasks = [t for t in result.touches if t.effect.channels == ["staff_task"]]
    assert len(tasks) == 6
    assert all(t.effect.task is not None and t.effect.task.staff_id == "s-1" for t in tasks)
    ignored = simulate(definition, facts(tier="ka"), T0, [], [], timedelta(days=70))
    assert templates(ignored)[:2] == ["staff_task", "care_moment_gift"]
    dropped = simulate(definition, facts(tier="standard"), T0, [], [])
    assert dropped.touches == []


def test_birthday_care_enters_on_the_birthday() -> None:
    definition = PLAYBOOKS["high_value_birthday"].definition
    result = simulate(definition, facts(tier="dt", birthday=date(1990, 4, 1)), T0, [], [])
    assert result.entered_at == datetime(2031, 4, 1, 2, 0, tzinfo=UTC)
    assert result.touches[0].effect.channels == ["staff_task"]


def test_membership_expiry_reminds_a_week_before_and_stops_on_renewal() -> None:
    definition = PLAYBOOKS["membership_expiry"].definition
    member = facts(membership_expires_at=datetime(2031, 4, 10, 4, 0, tzinfo=UTC), stored_value_balance="120")
    lapsing = simulate(definition, member, T0, [], [])
    assert lapsing.entered_at == datetime(2031, 4, 3, 2, 0, tzinfo=UTC)
    assert templates(lapsing) == ["membership_expiry_reminder", "stored_value_last_call"]
    renewed = simulate(
        definition, member, T0, [ScriptedEvent(datetime(2031, 4, 5, tzinfo=UTC), "Membership Renewed")], []
    )
    assert templates(renewed) == ["membership_expiry_reminder"] and renewed.goal_at is not None


def test_time_slice_on_a_trait_date() -> None:
    definition = PLAYBOOKS["time_slice"].definition
    result = simulate(definition, facts(traits={"child_graduation_date": "2031-07-01"}), T0, [], [])
    assert [(t.at.date(), t.effect.template_id) for t in result.touches] == [
        (date(2031, 6, 1), "time_slice_announce"),
        (date(2031, 6, 24), "time_slice_reminder"),
    ]
    assert simulate(definition, facts(), T0, [], []).state == "not entered"
