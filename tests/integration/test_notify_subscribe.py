"""Official account subscribe messages end to end in-process: one-time consents granted by the customer's answers,
held when a touch is claimed, spent once by a successful ``bizsend``, kept across retries, cleared by a rejection
or WeChat's 43101; on the real PostgreSQL, against the fake WeChat, on a virtual clock."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from scrm_contracts import CustomerErased, CustomersMerged, TouchRequest
from scrm_kit.errors import InvalidInput
from scrm_notify.adapters import subscribe_grants
from scrm_notify.domain.templates import TemplateSource
from scrm_notify.service import templates
from tests.fakes.notify_providers import FakeProviders, Step
from tests.integration.notify_harness import NotifyHarness, harness

TPL = "TPL-SUB-1"
AUTHORIZED = "Subscribe Message Authorized"


@pytest.fixture
async def notify(isolated_db_url: str, fake: FakeProviders) -> AsyncIterator[NotifyHarness]:
    fake.script.clear()
    async for h in harness(isolated_db_url, fake.url):
        yield h


async def official_account(notify: NotifyHarness, customer_id: str = "cus_oa") -> str:
    """A follower of the tenant's official account, and a subscribe template ``restock`` on WeChat template TPL."""
    await notify.configure("wechat_oa", appid="wx-test")
    source = TemplateSource(
        "Back in stock",
        provider_template=TPL,
        params={"thing1": "{{ product }} is back"},
        kind="subscribe",
        page="pages/item?id={{ product }}",
    )
    await templates.save(notify.sessions, notify.tenant_id, "restock", "wechat_oa", "default", source)
    openid = f"o-{notify.tenant_id}-{customer_id}"
    await notify.customer(customer_id, wechat_openid=openid, official_account_follower=True)
    return openid


async def accept(notify: NotifyHarness, fake: FakeProviders, openid: str, customer_id: str = "cus_oa") -> None:
    """The customer taps "accept" in the prompt: WeChat counts it, and its push reaches notify as an event."""
    fake.oa_accept(openid, TPL)
    await notify.tracked(customer_id, AUTHORIZED, openid=openid, template_id=TPL, status="accept")


def restock(notify: NotifyHarness, customer_id: str = "cus_oa", **fields: object) -> TouchRequest:
    fields.setdefault("priority", "marketing")
    return notify.request(customer_id, "wechat_oa", template_id="restock", variables={"product": "p9"}, **fields)  # type: ignore[arg-type]


async def unspent(notify: NotifyHarness, customer_id: str = "cus_oa") -> tuple[int, int]:
    """(unspent, held) of the customer's grants for TPL."""
    async with notify.sessions() as session:
        rows = await subscribe_grants.of_customer(session, notify.tenant_id, customer_id)
        held = await subscribe_grants.held_count(session, notify.tenant_id, customer_id)
    return sum(r.unspent for r in rows if r.wechat_template_id == TPL), held.get(TPL, 0)


def bizsends(fake: FakeProviders, openid: str) -> list[object]:
    return [
        s.body for s in fake.of("wechat_oa") if s.path == "message/subscribe/bizsend" and s.body["touser"] == openid
    ]


async def test_a_grant_is_spent_by_exactly_one_subscribe_message(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    await accept(notify, fake, openid)
    assert await unspent(notify) == (1, 0)
    request = restock(notify)
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert (touch.status, touch.channel) == ("sent", "wechat_oa")
    assert bizsends(fake, openid) == [
        {"touser": openid, "template_id": TPL, "page": "pages/item?id=p9", "data": {"thing1": {"value": "p9 is back"}}}
    ]
    assert await unspent(notify) == (0, 0)


async def test_without_a_grant_the_touch_is_suppressed_with_the_reason_or_falls_back(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    openid = await official_account(notify)
    request = restock(notify)
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert (touch.status, touch.reason_code) == ("suppressed", "no_subscribe_consent")
    assert f"no one-time subscribe consent for WeChat template {TPL}" in (touch.reason or "")
    assert bizsends(fake, openid) == []
    await notify.configure("webhook")
    fallback = notify.request("cus_oa", "wechat_oa", "webhook", template_id="restock", variables={"product": "p9"})
    await notify.send(fallback)
    assert (await notify.touch(fallback.touch_key)).channel == "webhook"


async def test_two_grants_carry_two_of_three_touches(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    await accept(notify, fake, openid)
    await accept(notify, fake, openid)
    requests = [restock(notify) for _ in range(3)]
    await notify.send(*requests)
    statuses = [(await notify.touch(r.touch_key)).status for r in requests]
    assert statuses == ["sent", "sent", "suppressed"]
    assert len(bizsends(fake, openid)) == 2
    assert await unspent(notify) == (0, 0)


async def test_a_redelivered_touch_spends_no_second_grant(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    await accept(notify, fake, openid)
    await accept(notify, fake, openid)
    request = restock(notify)
    await notify.send(request)
    await notify.send(request)  # Kafka delivers at least once
    await notify.send(request, request)  # and twice in one batch
    assert (await notify.touch(request.touch_key)).status == "sent"
    assert len(bizsends(fake, openid)) == 1
    assert await unspent(notify) == (1, 0)


async def test_a_retryable_failure_keeps_the_grant_for_the_retry(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    await accept(notify, fake, openid)
    fake.fail_next("wechat_oa", Step(-1))
    request = restock(notify, priority="transactional")
    await notify.send(request)
    assert (await notify.touch(request.touch_key)).status == "retrying"
    assert await unspent(notify) == (1, 1)  # held for this touch: another touch cannot take it meanwhile
    other = restock(notify, priority="transactional")
    await notify.send(other)
    assert (await notify.touch(other.touch_key)).reason_code == "no_subscribe_consent"
    await notify.tick(timedelta(minutes=10))
    assert (await notify.touch(request.touch_key)).status == "sent"
    assert await unspent(notify) == (0, 0)


async def test_the_daily_quota_defers_the_send_and_spends_nothing(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    await accept(notify, fake, openid)
    fake.fail_next("wechat_oa", Step(45009))
    request = restock(notify, priority="transactional")
    await notify.send(request)
    assert (await notify.touch(request.touch_key)).status == "deferred"
    assert await unspent(notify) == (1, 1)
    await notify.tick(timedelta(days=1))
    assert (await notify.touch(request.touch_key)).status == "sent"
    assert await unspent(notify) == (0, 0)


async def test_wechat_43101_fails_the_touch_and_clears_the_grants(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    # Notify counts two answers, but WeChat holds none (spent elsewhere, e.g. by another system on the account).
    for _ in range(2):
        await notify.tracked("cus_oa", AUTHORIZED, openid=openid, template_id=TPL, status="accept")
    request = restock(notify)
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert (touch.status, touch.reason_code) == ("failed", "permanent_error")
    assert "43101" in (touch.reason or "") and TPL in (touch.reason or "")
    assert await unspent(notify) == (0, 0)
    later = restock(notify)
    await notify.send(later)
    assert (await notify.touch(later.touch_key)).reason_code == "no_subscribe_consent"
    assert len(bizsends(fake, openid)) == 1


async def test_a_rejection_clears_the_grants_and_an_older_accept_arriving_late_adds_none(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    openid = await official_account(notify)
    await accept(notify, fake, openid)
    await accept(notify, fake, openid)
    notify.clock.advance(timedelta(minutes=1))
    await notify.tracked("cus_oa", AUTHORIZED, openid=openid, template_id=TPL, status="reject")
    assert await unspent(notify) == (0, 0)
    notify.clock.advance(timedelta(minutes=-2))  # an accept from before the rejection, delivered after it
    await notify.tracked("cus_oa", AUTHORIZED, openid=openid, template_id=TPL, status="accept")
    notify.clock.advance(timedelta(minutes=3))
    assert await unspent(notify) == (0, 0)
    request = restock(notify)
    await notify.send(request)
    assert (await notify.touch(request.touch_key)).reason_code == "no_subscribe_consent"
    await accept(notify, fake, openid)  # asked again, and accepted: one send
    assert await unspent(notify) == (1, 0)


async def test_marketing_never_goes_out_as_a_template_message(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    notice = TemplateSource("Shipped", provider_template="TPL-NOTICE", params={"first": "Order {{ order_id }}"})
    await templates.save(notify.sessions, notify.tenant_id, "shipped", "wechat_oa", "default", notice)
    promo = notify.request("cus_oa", "wechat_oa", template_id="shipped", variables={"order_id": "A1"})
    await notify.send(promo)
    touch = await notify.touch(promo.touch_key)
    assert (touch.status, touch.reason_code) == ("suppressed", "template_message_not_for_marketing")
    service = notify.request(
        "cus_oa", "wechat_oa", template_id="shipped", priority="transactional", variables={"order_id": "A1"}
    )
    await notify.send(service)
    assert (await notify.touch(service.touch_key)).status == "sent"
    [sent] = [s.body for s in fake.of("wechat_oa") if s.body.get("touser") == openid]
    assert sent["template_id"] == "TPL-NOTICE" and sent["client_msg_id"] == service.touch_key


async def test_grants_belong_to_one_tenant(notify: NotifyHarness, fake: FakeProviders) -> None:
    openid = await official_account(notify)
    await accept(notify, fake, openid)
    other = NotifyHarness(notify.sessions, notify.fake_url)
    try:
        # Same customer id, same openid and WeChat template in another tenant: its customer gave no consent there.
        await other.configure("wechat_oa", appid="wx-test")
        source = TemplateSource("Back", provider_template=TPL, params={"thing1": "{{ product }}"}, kind="subscribe")
        await templates.save(other.sessions, other.tenant_id, "restock", "wechat_oa", "default", source)
        await other.customer("cus_oa", wechat_openid=openid, official_account_follower=True)
        theirs = restock(other)
        await other.send(theirs)
        assert (await other.touch(theirs.touch_key)).reason_code == "no_subscribe_consent"
    finally:
        await other.client.aclose()
    assert await unspent(notify) == (1, 0)
    ours = restock(notify)
    await notify.send(ours)
    assert (await notify.touch(ours.touch_key)).status == "sent"


async def test_subscribe_templates_are_checked_on_save(notify: NotifyHarness) -> None:
    with pytest.raises(InvalidInput) as not_oa:
        await templates.save(
            notify.sessions, notify.tenant_id, "x", "sms", "default", TemplateSource("b", kind="subscribe")
        )
    assert not_oa.value.field == "kind"
    with pytest.raises(InvalidInput) as page_on_template:
        await templates.save(
            notify.sessions, notify.tenant_id, "x", "wechat_oa", "default", TemplateSource("b", page="p")
        )
    assert page_on_template.value.field == "page"


async def test_a_merge_adds_the_grants_together_and_an_erasure_forgets_them(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    openid = await official_account(notify, "cus_old")
    await notify.customer("cus_new", wechat_openid=openid, official_account_follower=True)
    await accept(notify, fake, openid, "cus_old")
    await accept(notify, fake, openid, "cus_new")
    await notify.change(
        CustomersMerged(
            event_id=f"merge-{notify.tenant_id}",
            tenant_id=notify.tenant_id,
            customer_id="cus_new",
            merged_customer_ids=["cus_old"],
            occurred_at=notify.clock.now(),
        )
    )
    assert await unspent(notify, "cus_new") == (2, 0)
    assert await unspent(notify, "cus_old") == (0, 0)
    request = restock(notify, "cus_old")  # a touch for the merged id goes to the survivor, spending its grant
    await notify.send(request)
    assert (await notify.touch(request.touch_key)).status == "sent"
    assert await unspent(notify, "cus_new") == (1, 0)
    await notify.change(
        CustomerErased(
            event_id=f"erase-{notify.tenant_id}",
            tenant_id=notify.tenant_id,
            customer_id="cus_new",
            occurred_at=notify.clock.now(),
        )
    )
    assert await notify.sql("SELECT 1 FROM notify.subscribe_grants WHERE tenant_id = :t", t=notify.tenant_id) == []
