"""The journey engine against the real PostgreSQL (and the real Kafka for what it publishes), on a test clock."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import pytest

from scrm_contracts import CustomerErased, CustomersMerged, Topic, TouchResult, TouchStatus
from scrm_stack.launcher import Stack
from tests.integration.journey_harness import JourneyHarness, harness, touch_keys

DAY = timedelta(days=1)


@pytest.fixture
async def journey(db_url: str, stack: Stack) -> AsyncIterator[JourneyHarness]:
    async for h in harness(db_url, stack.kafka.bootstrap):
        yield h


def definition(nodes: dict[str, Any], event: str = "Joined Club", **extra: Any) -> dict[str, Any]:
    first = next(iter(nodes))
    return {"name": "it", "trigger": {"type": "event", "event": event}, "start": first, "nodes": nodes, **extra}


WAIT_THEN_TOUCH = {
    "wait": {"type": "wait", "duration": {"days": 2}, "next": "hello"},
    "hello": {"type": "send_touch", "channels": ["wecom", "sms"], "template_id": "hello", "priority": "marketing"},
}


async def test_wait_then_touch_fires_on_the_clock_and_publishes_one_request(journey: JourneyHarness) -> None:
    await journey.publish(definition(WAIT_THEN_TOUCH))
    await journey.feed(journey.snapshot("c1", timezone="Asia/Shanghai"), journey.tracked("c1", "Joined Club"))
    [(instance, moves)] = await journey.instances("c1")
    assert instance.state == "waiting" and instance.current_node == "wait"
    journey.clock.advance(DAY)
    assert await journey.tick() == 0, "not due yet"
    journey.clock.advance(DAY)
    assert await journey.tick() == 1
    [(instance, moves)] = await journey.instances("c1")
    assert instance.state == "completed"
    assert moves[-3:] == ["wait:waited", "hello:touch requested", "end:completed"]
    [request] = await journey.published()
    assert request["touch_key"] == f"{instance.instance_id}:hello:1"
    assert request["channels"] == ["wecom", "sms"] and request["customer_id"] == "c1"
    assert request["journey_id"] == instance.journey_id and request["journey_version"] == 1


async def test_tags_staff_tasks_and_wait_for_event(journey: JourneyHarness) -> None:
    await journey.publish(
        definition(
            {
                "task": {"type": "staff_task", "title": "Call", "suggested_words": "Hi!", "timeout": {"days": 3},
                         "on_completed": "tag", "on_expired": "fallback"},
                "fallback": {"type": "send_touch", "channels": ["sms"], "template_id": "auto", "next": "tag"},
                "tag": {"type": "tag", "add": ["cared"], "remove": ["cold"], "next": "clicked"},
                "clicked": {"type": "wait_for_event", "event": "Message Clicked", "timeout": {"days": 1},
                            "on_event": "thanks", "on_timeout": None},
                "thanks": {"type": "send_touch", "channels": ["wecom"], "template_id": "thanks"},
            }
        )
    )  # fmt: skip
    await journey.feed(journey.snapshot("done", owner_staff_id="s-9"), journey.tracked("done", "Joined Club"))
    await journey.feed(journey.snapshot("late"), journey.tracked("late", "Joined Club"))
    [task] = [r for r in await journey.published() if r["customer_id"] == "done"]
    assert task["channels"] == ["staff_task"] and task["task"]["staff_id"] == "s-9"
    completed = TouchResult(
        event_id="tr-1",
        touch_key=task["touch_key"],
        tenant_id=journey.tenant_id,
        customer_id="done",
        status=TouchStatus.COMPLETED,
        occurred_at=journey.clock.now(),
    )
    await journey.feed(completed, completed)  # a duplicate changes nothing
    await journey.feed(journey.tracked("done", "Message Clicked"))
    journey.clock.advance(4 * DAY)
    assert await journey.tick() == 1  # the late customer's task timed out: fallback, tag, now waiting for a click
    by_customer = {i.customer_id: (i, moves) for i, moves in await journey.instances()}
    assert by_customer["done"][0].state == "completed"
    assert "task:task completed" in by_customer["done"][1] and "clicked:Message Clicked seen" in by_customer["done"][1]
    assert "task:task timed out" in by_customer["late"][1]
    requests = await journey.published()
    assert sorted((r["customer_id"], r["template_id"]) for r in requests) == [
        ("done", "staff_task"), ("done", "thanks"), ("late", "auto"), ("late", "staff_task")
    ]  # fmt: skip
    tags = [e for e in await journey.published(Topic.EVENTS.value) if e.get("event") == "Tags Changed"]
    assert sorted(e["customer_id"] for e in tags) == ["done", "late"]
    assert tags[0]["properties"] == {"add": ["cared"], "remove": ["cold"]} and tags[0]["user_id"].startswith("u-")


async def test_restart_mid_wait_loses_and_doubles_nothing(db_url: str, stack: Stack) -> None:
    first = harness(db_url, stack.kafka.bootstrap)
    before = await anext(first)
    await before.publish(definition(WAIT_THEN_TOUCH))
    await before.feed(*[before.tracked(f"c{n}", "Joined Club") for n in range(40)])
    before.clock.advance(3 * DAY)

    class Crash(Exception):
        pass

    async def crash(*_: Any) -> None:
        raise Crash  # the process dies after claiming timers, before its transaction commits

    from scrm_journey.adapters import writes

    original = writes.Writes.flush
    writes.Writes.flush = crash  # type: ignore[method-assign]
    try:
        with pytest.raises(Crash):
            await before.tick(batch_size=25)
    finally:
        writes.Writes.flush = original  # type: ignore[method-assign]
    await first.aclose()  # the old process is gone: its pool with it

    async for after in harness(db_url, stack.kafka.bootstrap, before.clock):
        after.tenant_id = before.tenant_id
        assert await after.tick(batch_size=25) == 40
        assert await after.tick() == 0
        found = await after.instances()
        assert len(found) == 40 and {i.state for i, _ in found} == {"completed"}
        assert all(moves.count("wait:waited") == 1 for _, moves in found)
        requests = await after.published()
        assert len(requests) == 40 and len(set(touch_keys(requests))) == 40


async def test_two_scheduler_replicas_fire_every_timer_exactly_once(db_url: str, stack: Stack) -> None:
    import asyncio

    from scrm_journey.service.timers import TimerSweep

    replicas = [harness(db_url, stack.kafka.bootstrap) for _ in range(2)]
    one, two = [await anext(r) for r in replicas]
    two.tenant_id, two.clock = one.tenant_id, one.clock
    await one.publish(definition(WAIT_THEN_TOUCH))
    for start in range(0, 600, 100):
        await one.feed(*[one.tracked(f"c{n}", "Joined Club") for n in range(start, start + 100)])
    one.clock.advance(3 * DAY)

    async def drain(h: JourneyHarness) -> int:
        sweep = TimerSweep(h.sessions, h.clock, 40, tenant_id=h.tenant_id)
        fired = 0
        while (n := await sweep()) > 0:
            fired += n
        return fired

    counts = await asyncio.gather(drain(one), drain(two))
    assert sum(counts) == 600 and all(c > 0 for c in counts), counts
    found = await one.instances()
    assert {i.state for i, _ in found} == {"completed"}
    assert all(moves.count("wait:waited") == 1 and moves.count("hello:touch requested") == 1 for _, moves in found)
    requests = await one.published()
    assert len(requests) == 600 and len(set(touch_keys(requests))) == 600
    for r in replicas:
        await r.aclose()


async def test_new_version_for_new_entries_running_instances_finish_on_theirs(journey: JourneyHarness) -> None:
    v1 = {**WAIT_THEN_TOUCH, "hello": {**WAIT_THEN_TOUCH["hello"], "template_id": "hello_v1"}}
    journey_id = await journey.publish(definition(v1))
    await journey.feed(journey.tracked("early", "Joined Club"))
    v2 = {**WAIT_THEN_TOUCH, "hello": {**WAIT_THEN_TOUCH["hello"], "template_id": "hello_v2"}}
    await journey.publish(definition(v2), journey_id)
    await journey.feed(journey.tracked("late", "Joined Club"))
    journey.clock.advance(3 * DAY)
    assert await journey.tick() == 2
    versions = {i.customer_id: i.journey_version for i, _ in await journey.instances()}
    assert versions == {"early": 1, "late": 2}
    sent = {r["customer_id"]: r["template_id"] for r in await journey.published()}
    assert sent == {"early": "hello_v1", "late": "hello_v2"}


@pytest.mark.parametrize(
    ("reentry", "max_concurrent", "expected"),
    [({"policy": "never"}, 1, 1), ({"policy": "after_days", "days": 5}, 1, 2), ({"policy": "always"}, 2, 3)],
)
async def test_reentry_policies_and_concurrency_cap(
    journey: JourneyHarness, reentry: dict[str, Any], max_concurrent: int, expected: int
) -> None:
    await journey.publish(definition(WAIT_THEN_TOUCH, reentry=reentry, max_concurrent=max_concurrent))
    await journey.feed(journey.tracked("c", "Joined Club"))
    await journey.feed(journey.tracked("c", "Joined Club"))  # day 0 again: the cap or the policy decides
    journey.clock.advance(6 * DAY)  # the first instances completed by now
    await journey.tick()
    await journey.feed(journey.tracked("c", "Joined Club"))
    assert len(await journey.instances("c")) == expected


async def test_goal_exit_and_holdout_counted_in_stats(journey: JourneyHarness) -> None:
    from scrm_journey.service.queries import journey_stats

    nodes = {
        "split": {"type": "split", "branches": [{"name": "test", "weight": 50, "next": "offer"},
                                                {"name": "control", "weight": 50, "next": "offer", "holdout": True}]},
        "offer": {"type": "issue_coupon", "coupon_id": "spring", "channels": ["wecom"], "next": "wait"},
        "wait": {"type": "wait", "duration": {"days": 7}},
    }  # fmt: skip
    journey_id = await journey.publish(
        definition(nodes, goal={"event": "Coupon Redeemed", "where": {"coupon_id": "spring"}},
                   exit_when=[{"event": "Unsubscribed"}])
    )  # fmt: skip
    await journey.feed(*[journey.tracked(f"c{n}", "Joined Club") for n in range(60)])
    found = await journey.instances()
    held = [i.customer_id for i, _ in found if i.holdout]
    touched = [i.customer_id for i, _ in found if not i.holdout]
    assert 10 < len(held) < 50
    requests = await journey.published()
    assert sorted(r["customer_id"] for r in requests) == sorted(touched), "the holdout gets no touch"
    await journey.feed(*[journey.tracked(c, "Coupon Redeemed", coupon_id="spring") for c in touched[:10]])
    await journey.feed(*[journey.tracked(c, "Coupon Redeemed", coupon_id="spring") for c in held[:2]])
    await journey.feed(journey.tracked(touched[-1], "Unsubscribed"))
    async with journey.sessions() as session:
        stats = await journey_stats(session, journey.tenant_id, journey_id)
    assert (stats.treatment.entered, stats.treatment.converted) == (len(touched), 10)
    assert (stats.holdout.entered, stats.holdout.converted) == (len(held), 2)
    assert stats.uplift == pytest.approx(10 / len(touched) - 2 / len(held), abs=2e-4)
    assert stats.states == {"converted": 12, "exited": 1, "waiting": 47}
    assert stats.current == {"wait": 47} and stats.passed["offer"] == 60


async def test_pause_holds_timers_and_entries_resume_continues_archive_exits(journey: JourneyHarness) -> None:
    journey_id = await journey.publish(definition(WAIT_THEN_TOUCH))
    await journey.feed(journey.tracked("a", "Joined Club"))
    await journey.admin("pause", journey_id)
    await journey.feed(journey.tracked("b", "Joined Club"))
    journey.clock.advance(3 * DAY)
    assert await journey.tick() == 0
    assert [i.customer_id for i, _ in await journey.instances()] == ["a"]
    await journey.admin("resume", journey_id)
    assert await journey.tick() == 1
    await journey.feed(journey.tracked("c", "Joined Club"))
    await journey.admin("archive", journey_id)
    await journey.feed(journey.tracked("d", "Joined Club"))
    states = {i.customer_id: (i.state, moves[-1]) for i, moves in await journey.instances()}
    assert states == {"a": ("completed", "end:completed"), "c": ("exited", "wait:journey archived")}
    journey.clock.advance(3 * DAY)
    assert await journey.tick() == 0


async def test_merged_customers_move_and_erased_customers_vanish(journey: JourneyHarness) -> None:
    await journey.publish(definition(WAIT_THEN_TOUCH))
    await journey.feed(*[journey.tracked(c, "Joined Club") for c in ("winner", "loser", "other", "gone")])
    await journey.feed(journey.snapshot("gone", tags=["x"]))
    merged = CustomersMerged(merged_customer_ids=["loser", "other"], **journey.base("winner"))
    await journey.feed(merged)
    found = {i.instance_id: (i.customer_id, i.state) for i, _ in await journey.instances()}
    assert sorted(found.values()) == [("gone", "waiting"), ("winner", "exited"), ("winner", "exited"),
                                      ("winner", "waiting")]  # fmt: skip
    await journey.feed(CustomerErased(**journey.base("gone")))
    assert await journey.instances("gone") == []
    left = "SELECT count(*) FROM journey.{} WHERE tenant_id = :t AND customer_id = 'gone'"
    assert await journey.scalar(left.format("timers")) == 0 and await journey.scalar(left.format("snapshots")) == 0
    journey.clock.advance(3 * DAY)
    assert await journey.tick() == 1
    assert [r["customer_id"] for r in await journey.published()] == ["winner"]


async def test_snapshots_apply_only_newer_versions_and_drive_conditions(journey: JourneyHarness) -> None:
    nodes = {
        "vip": {"type": "condition", "rule": {"field": "tier", "op": "eq", "value": "dt"}, "then": "task",
                "else": None},
        "task": {"type": "send_touch", "channels": ["wecom"], "template_id": "vip"},
    }  # fmt: skip
    await journey.publish(definition(nodes))
    await journey.feed(journey.snapshot("c", version=5, tier="dt"), journey.snapshot("c", version=4, tier="standard"))
    await journey.feed(journey.snapshot("c", version=3, tier="standard"))
    await journey.feed(journey.tracked("c", "Joined Club"))
    assert [r["template_id"] for r in await journey.published()] == ["vip"]


async def test_date_trigger_enters_on_the_birthday_and_reschedules_a_year_on(journey: JourneyHarness) -> None:
    document = {
        "name": "birthday", "trigger": {"type": "date", "field": "birthday", "at_time": "10:00"}, "start": "wish",
        "nodes": {"wish": {"type": "send_touch", "channels": ["wecom"], "template_id": "birthday"}},
        "reentry": {"policy": "after_days", "days": 300},
    }  # fmt: skip
    await journey.feed(journey.snapshot("early", birthday="1990-03-05"))  # known before the journey exists
    await journey.publish(document)
    await journey.feed(journey.snapshot("late", birthday="1992-03-10"))
    journey.clock.advance(5 * DAY)
    assert await journey.tick() == 1
    [(instance, _)] = await journey.instances()
    assert instance.customer_id == "early"
    due = await journey.scalar("SELECT min(due_at) FROM journey.timers WHERE tenant_id = :t AND customer_id = 'early'")
    assert (due.year, due.month, due.day) == (2032, 3, 5)
    journey.clock.advance(5 * DAY)
    assert await journey.tick() == 1
    assert sorted(r["customer_id"] for r in await journey.published()) == ["early", "late"]


async def test_default_welcome_runs_without_setup(journey: JourneyHarness) -> None:
    await journey.feed(journey.stage("c", "new", "prospect"))
    [(instance, moves)] = await journey.instances("c")
    assert instance.journey_id == "welcome" and instance.state == "completed"
    [request] = await journey.published()
    assert (request["template_id"], request["channels"], request["priority"]) == (
        "welcome",
        ["webhook"],
        "transactional",
    )


async def test_a_completed_instance_still_converts_within_the_goal_window(journey: JourneyHarness) -> None:
    from scrm_journey.service.queries import journey_stats

    nodes = {"hi": {"type": "send_touch", "channels": ["sms"], "template_id": "hi"}}
    journey_id = await journey.publish(definition(nodes, goal={"event": "Order Completed", "within_days": 3}))
    await journey.feed(journey.tracked("soon", "Joined Club"), journey.tracked("late", "Joined Club"))
    journey.clock.advance(2 * DAY)
    await journey.feed(journey.tracked("soon", "Order Completed"))
    journey.clock.advance(2 * DAY)
    await journey.feed(journey.tracked("late", "Order Completed"))
    async with journey.sessions() as session:
        stats = await journey_stats(session, journey.tenant_id, journey_id)
    assert (stats.treatment.entered, stats.treatment.converted, stats.states) == (2, 1, {"completed": 2})


async def test_one_batch_enters_once_and_sees_its_own_entries(journey: JourneyHarness) -> None:
    nodes = {"wait": {"type": "wait", "duration": {"days": 1}, "next": None}}
    await journey.publish(definition(nodes, goal={"event": "Order Completed"}))
    joined = journey.tracked("c", "Joined Club")
    await journey.feed(joined, journey.tracked("c", "Joined Club"), joined, journey.tracked("c", "Order Completed"))
    [(instance, moves)] = await journey.instances("c")
    assert instance.state == "converted" and moves[-1] == "wait:goal reached"


CLICK_OR_REMIND = {
    "hello": {"type": "send_touch", "channels": ["wecom"], "template_id": "hello", "next": "clicked"},
    "clicked": {"type": "wait_for_event", "event": "Message Clicked", "timeout": {"days": 2},
                "on_event": "thanks", "on_timeout": "reminder"},
    "thanks": {"type": "send_touch", "channels": ["wecom"], "template_id": "thanks"},
    "reminder": {"type": "send_touch", "channels": ["sms"], "template_id": "reminder"},
}  # fmt: skip


async def test_pause_holds_event_moves_and_resume_applies_them(journey: JourneyHarness) -> None:
    journey_id = await journey.publish(
        definition(CLICK_OR_REMIND, goal={"event": "Order Completed"}, exit_when=[{"event": "Unsubscribed"}])
    )
    await journey.feed(*[journey.tracked(c, "Joined Club") for c in ("clicker", "quiet", "buyer", "leaver")])
    await journey.admin("pause", journey_id)
    # While paused: a click moves nobody on and sends nothing, but is kept; goals and exit rules still apply.
    await journey.feed(journey.tracked("clicker", "Message Clicked"), journey.tracked("clicker", "Message Clicked"))
    await journey.feed(journey.tracked("buyer", "Order Completed"), journey.tracked("leaver", "Unsubscribed"))
    by_customer = {i.customer_id: (i, moves) for i, moves in await journey.instances()}
    clicker, clicker_moves = by_customer["clicker"]
    assert (clicker.state, clicker.current_node) == ("waiting", "clicked")
    assert clicker_moves.count("clicked:Message Clicked seen while paused (held)") == 1
    assert (by_customer["buyer"][0].state, by_customer["leaver"][0].state) == ("converted", "exited")
    journey.clock.advance(3 * DAY)  # the click timeout passes during the pause: the held click still wins
    assert await journey.tick() == 0, "no timer fires while paused"
    assert sorted(r["template_id"] for r in await journey.published()) == ["hello"] * 4
    await journey.admin("resume", journey_id)
    assert await journey.tick() == 2  # the clicker (its held click, at once) and the quiet one (timed out)
    by_customer = {i.customer_id: (i, moves) for i, moves in await journey.instances()}
    clicker, clicker_moves = by_customer["clicker"]
    assert clicker.state == "completed" and "clicked:Message Clicked seen" in clicker_moves
    assert "clicked:no Message Clicked in time" in by_customer["quiet"][1]
    requests = await journey.published()
    sent = sorted((r["customer_id"], r["template_id"]) for r in requests if r["template_id"] != "hello")
    assert sent == [("clicker", "thanks"), ("quiet", "reminder")]


async def test_a_click_held_during_a_pause_moves_the_instance_at_resume_before_its_timeout(
    journey: JourneyHarness,
) -> None:
    journey_id = await journey.publish(definition(CLICK_OR_REMIND))
    await journey.feed(journey.tracked("c", "Joined Club"))
    await journey.admin("pause", journey_id)
    await journey.feed(journey.tracked("c", "Message Clicked"))
    await journey.admin("resume", journey_id)  # well before the 2-day timeout
    assert await journey.tick() == 1
    [(instance, moves)] = await journey.instances("c")
    assert instance.state == "completed" and moves.count("clicked:Message Clicked seen") == 1
    journey.clock.advance(3 * DAY)
    assert await journey.tick() == 0, "the timeout timer went with the move"
    assert sorted(r["template_id"] for r in await journey.published()) == ["hello", "thanks"]
