"""``customer.updated`` goes out when what other services see of a customer changes, not for every event."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from scrm_profile.service.consume import ProfileConsumer
from tests.conftest import TenantCredentials
from tests.integration.profile_harness import ProfileHarness, event, harness, order


@pytest.fixture(params=[True, False], ids=["batch", "event by event"])
async def profile(isolated_db_url: str, request: pytest.FixtureRequest) -> AsyncIterator[ProfileHarness]:
    """The harness, its consumer applying batches set-based or event by event: both paths keep the same rule."""
    async for h in harness(isolated_db_url):
        h.consumer = ProfileConsumer(h.sessions, h.clock, batched=request.param)
        yield h


async def test_only_events_that_change_the_snapshot_publish_one(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    t = tenant.tenant_id
    stream = [
        event(t, "s1", kind="identify", traits={"plan": "pro"}, event_id="s-new"),  # creates the customer
        event(t, "s1", "Viewed Product", properties={"sku": "a"}, event_id="s-view-1"),
        event(t, "s1", "Viewed Product", properties={"sku": "b"}, event_id="s-view-2"),
        event(t, "s1", "Tags Changed", properties={"add": ["vip"]}, event_id="s-tag"),
        event(t, "s1", kind="identify", traits={"plan": "pro"}, event_id="s-same-plan"),
        event(t, "s1", kind="page", event_id="s-page"),
        order(t, "s1", "s1-o1", "88.00", event_id="s-order"),
        event(t, "s1", "Tags Changed", properties={"add": ["vip"]}, event_id="s-tag-again"),
    ]
    await profile.feed(stream)

    updates = await profile.outbox_changes(t, "customer.updated")
    assert [(u["version"], u["event_id"].rsplit(":", 1)[1]) for u in updates] == [
        (1, "s-new"),
        (2, "s-tag"),
        (3, "s-order"),
    ]
    assert updates[1]["snapshot"]["tags"] == ["vip"] and updates[1]["snapshot"]["traits"] == {"plan": "pro"}
    assert updates[2]["snapshot"]["orders_count"] == 1 and updates[2]["snapshot"]["revenue_total"] == "88.00"
    # every track event is still passed on, changed or not
    tracked = await profile.outbox_changes(t, "event.tracked")
    assert [c["source_event_id"] for c in tracked] == ["s-view-1", "s-view-2", "s-tag", "s-order", "s-tag-again"]
    customer = await profile.customer(t, "s1")
    assert customer is not None and customer.version == 3 and customer.last_engagement_at is not None


async def test_the_row_is_written_only_when_an_event_changes_it(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    t = tenant.tenant_id
    await profile.feed([event(t, "r1", "Tags Changed", properties={"add": ["tea"]}), event(t, "r2", kind="page")])
    created = profile.clock.now()
    profile.clock.advance(timedelta(hours=1))
    await profile.feed([event(t, "r1", "Viewed Product"), event(t, "r2", "Viewed Product")])
    viewed = {u: await profile.customer(t, u) for u in ("r1", "r2")}
    assert all(c is not None and c.updated_at == created and c.version == 1 for c in viewed.values())
    profile.clock.advance(timedelta(hours=1))
    later = created + timedelta(days=1)
    await profile.feed([event(t, "r1", "Viewed Product"), event(t, "r2", kind="page", at=later)])
    r1, r2 = await profile.customer(t, "r1"), await profile.customer(t, "r2")
    assert r1 is not None and r1.updated_at == created, "a view changes nothing: the row stays as it was"
    # a later page view moves the last engagement: the row is written, but others see nothing new
    assert r2 is not None and r2.last_engagement_at == later and r2.updated_at == profile.clock.now()
    assert r2.version == 1 and len(await profile.outbox_changes(t, "customer.updated")) == 2
