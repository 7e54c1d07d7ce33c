"""Tags changed by events: a shop's 'Tags Changed' track call, and the platform's own (journey) events that name
our customer id instead of the shop's identifiers."""

from collections.abc import AsyncIterator

import pytest

from tests.conftest import TenantCredentials
from tests.integration.profile_harness import ProfileHarness, event, harness, order


@pytest.fixture
async def profile(isolated_db_url: str) -> AsyncIterator[ProfileHarness]:
    async for h in harness(isolated_db_url):
        yield h


async def test_a_shop_adds_and_removes_tags_with_a_track_call(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    t = tenant.tenant_id
    await profile.feed([event(t, "t1", "Tags Changed", properties={"add": ["vip", "tea"]})])
    await profile.feed([event(t, "t1", "Tags Changed", properties={"add": ["baby"], "remove": ["tea"]})])
    customer = await profile.customer(t, "t1")
    assert customer is not None and customer.tags == ["baby", "vip"]
    snapshots = await profile.outbox_changes(t, "customer.updated")
    assert snapshots[-1]["snapshot"]["tags"] == ["baby", "vip"]


async def test_a_platform_event_names_the_customer_by_our_id(
    profile: ProfileHarness, tenant: TenantCredentials
) -> None:
    t = tenant.tenant_id
    await profile.feed([order(t, "m1", "m1-o1", "10")])
    first = await profile.customer(t, "m1")
    assert first is not None
    await profile.feed([event(t, None, "Tags Changed", customer_id=first.customer_id, properties={"add": ["j1"]})])
    tagged = await profile.customer(t, "m1")
    assert tagged is not None and tagged.tags == ["j1"]
    assert len(await profile.customers(t)) == 1, "no customer created for a platform event"
    # an unknown (e.g. erased) customer id is skipped: nobody is created, nothing fails
    await profile.feed([event(t, None, "Tags Changed", customer_id="cus_gone", properties={"add": ["x"]})])
    assert len(await profile.customers(t)) == 1


async def test_a_merged_customer_id_follows_its_survivor(profile: ProfileHarness, tenant: TenantCredentials) -> None:
    t = tenant.tenant_id
    await profile.feed([order(t, "m3", "m3-o1", "10"), event(t, None, "Viewed", anonymous_id="anon-m4")])
    ids = {c.customer_id for c in await profile.customers(t)}
    assert len(ids) == 2
    await profile.feed([event(t, "m3", kind="identify", anonymous_id="anon-m4")])
    (survivor,) = await profile.customers(t)
    (loser,) = ids - {survivor.customer_id}
    await profile.feed([event(t, None, "Tags Changed", customer_id=loser, properties={"add": ["after-merge"]})])
    (tagged,) = await profile.customers(t)
    assert tagged.customer_id == survivor.customer_id and tagged.tags == ["after-merge"]
