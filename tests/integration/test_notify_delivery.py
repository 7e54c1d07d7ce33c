"""Notify end to end in-process: gates, templates, adapters against fake providers, retries, circuit, receipts,
on the real PostgreSQL and a virtual clock."""

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest

from scrm_notify.adapters.orm import TemplateRow
from scrm_notify.service.tasks import TaskService
from scrm_stack.launcher import free_port
from tests.fakes.notify_providers import FakeProviders, Step
from tests.integration.notify_harness import NotifyHarness, harness

PHONE = "13800138000"


@pytest.fixture
async def notify(isolated_db_url: str, fake: FakeProviders) -> AsyncIterator[NotifyHarness]:
    fake.script.clear()
    async for h in harness(isolated_db_url, fake.url, circuit_threshold=3):
        yield h


def hooks(fake: FakeProviders, h: NotifyHarness) -> list[object]:
    return [s for s in fake.of("webhook") if s.path == h.tenant_id]


async def test_webhook_touch_is_sent_once_and_a_redelivery_changes_nothing(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("webhook")
    await notify.customer("cus_a")
    request = notify.request("cus_a", "webhook", priority="transactional")
    await notify.send(request)
    await notify.send(request)  # at-least-once delivery from Kafka
    touch = await notify.touch(request.touch_key)
    assert (touch.status, touch.channel, touch.attempts) == ("sent", "webhook", 1)
    assert len(hooks(fake, notify)) == 1
    assert fake.webhook_accepted[request.touch_key] == 1


async def test_unknown_customer_is_held_until_the_profile_arrives(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("webhook")
    early = notify.request("cus_late", "webhook", priority="transactional")
    await notify.send(early)
    assert (await notify.touch(early.touch_key)).status == "held"
    await notify.customer("cus_late")
    await notify.tick(timedelta(seconds=3))  # the profile came a moment later: sent then, not when the grace ends
    assert (await notify.touch(early.touch_key)).status == "sent"
    never = notify.request("cus_never", "webhook", priority="transactional")
    await notify.send(never)
    await notify.tick(timedelta(minutes=3))
    touch = await notify.touch(never.touch_key)
    assert (touch.status, touch.reason_code) == ("suppressed", "customer_unknown")


async def test_erased_customer_is_forgotten_and_never_touched(notify: NotifyHarness, fake: FakeProviders) -> None:
    from scrm_contracts import CustomerErased

    await notify.configure("webhook")
    await notify.customer("cus_gone", phone=PHONE)
    first = notify.request("cus_gone", "webhook", priority="transactional")
    await notify.send(first)
    await notify.change(
        CustomerErased(
            event_id="erase-1", tenant_id=notify.tenant_id, customer_id="cus_gone", occurred_at=notify.clock.now()
        )
    )
    assert await notify.sql("SELECT 1 FROM notify.touches WHERE tenant_id = :t", t=notify.tenant_id) == []
    assert await notify.sql("SELECT 1 FROM notify.customers WHERE tenant_id = :t", t=notify.tenant_id) == []
    await notify.customer("cus_gone", phone=PHONE)  # a late snapshot does not bring them back
    after = notify.request("cus_gone", "webhook", priority="transactional")
    await notify.send(after)
    touch = await notify.touch(after.touch_key)
    assert (touch.status, touch.reason_code) == ("suppressed", "customer_erased")
    assert len(hooks(fake, notify)) == 1


async def test_sms_waits_out_quiet_hours_and_honours_an_unsubscribe_in_between(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("sms", provider="aliyun", access_key_id="LTAI-test", sign_name="Shop")
    async with notify.sessions() as s, s.begin():
        s.add(
            TemplateRow(
                tenant_id=notify.tenant_id,
                template_id="promo",
                channel="sms",
                locale="default",
                body="Sale {{ pct }}% off, reply TD to unsubscribe",
                provider_template="SMS_1",
                params={"pct": "{{ pct }}"},
            )
        )
    for customer in ("cus_night", "cus_revoked"):
        await notify.customer(customer, phone=PHONE, sms="subscribed")
    notify.clock.advance(timedelta(hours=10, minutes=30))  # 22:30 in Shanghai
    keep = notify.request("cus_night", "sms", template_id="promo", variables={"pct": 20})
    revoke = notify.request("cus_revoked", "sms", template_id="promo", variables={"pct": 20})
    await notify.send(keep, revoke)
    for key in (keep.touch_key, revoke.touch_key):
        touch = await notify.touch(key)
        assert (touch.status, touch.reason_code) == ("deferred", "quiet_hours")
    await notify.tracked("cus_revoked", "SMS Unsubscribed", keyword="TD")
    await notify.tick(timedelta(hours=10, minutes=31))  # 09:01 next morning
    assert (await notify.touch(keep.touch_key)).status == "sent"
    revoked = await notify.touch(revoke.touch_key)
    assert (revoked.status, revoked.reason_code) == ("suppressed", "unsubscribed")
    sent = [s for s in fake.of("sms_aliyun") if s.body["OutId"] in (keep.touch_key, revoke.touch_key)]
    assert [s.body["OutId"] for s in sent] == [keep.touch_key]
    assert sent[0].body["TemplateCode"] == "SMS_1" and sent[0].body["TemplateParam"] == '{"pct":"20"}'


async def test_flaky_webhook_is_retried_with_backoff_until_it_answers(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("webhook")
    await notify.customer("cus_retry")
    fake.fail_next("webhook", Step(503), Step(429))
    request = notify.request("cus_retry", "webhook", priority="transactional")
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert touch.status == "retrying" and touch.due_at is not None
    assert touch.due_at - notify.clock.now() <= timedelta(seconds=2)
    assert await notify.tick() == 0  # not due yet: nothing happens before the backoff ends
    await notify.tick(timedelta(seconds=2))
    second = await notify.touch(request.touch_key)
    assert second.status == "retrying" and timedelta(seconds=2) <= second.due_at - notify.clock.now() <= timedelta(
        seconds=4
    )
    await notify.tick(timedelta(seconds=4))
    final = await notify.touch(request.touch_key)
    assert (final.status, final.attempts) == ("sent", 3)
    assert len(hooks(fake, notify)) == 3


async def test_circuit_opens_on_a_failing_provider_and_spares_it(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("webhook")
    fake.fail_next("webhook", *[Step(500)] * 3)
    requests = []
    for n in range(5):
        await notify.customer(f"cus_c{n}")
        requests.append(notify.request(f"cus_c{n}", "webhook", priority="transactional"))
    for request in requests:
        await notify.send(request)
    assert len(hooks(fake, notify)) == 3, "after three failures in a row the provider is not called"
    spared = await notify.touch(requests[4].touch_key)
    assert spared.status == "retrying" and "circuit open" in (spared.reason or "")
    assert spared.attempts == 0
    await notify.tick(timedelta(minutes=15))  # cooldown over, the provider has recovered
    await notify.tick(timedelta(minutes=15))
    statuses = {(await notify.touch(r.touch_key)).status for r in requests}
    assert statuses == {"sent"}


async def test_permanent_errors_fail_at_once_and_a_blacklist_answer_unsubscribes(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure(
        "sms", provider="tencent", secret_id="AKID-test", sdk_app_id="1400", sign_name="Shop", template_id="100"
    )
    await notify.customer("cus_bad", phone="12345", sms="subscribed")
    await notify.customer("cus_black", phone=PHONE, sms="subscribed")
    fake.fail_next(
        "sms_tencent",
        Step("InvalidParameterValue.IncorrectPhoneNumber"),
        Step("FailedOperation.PhoneNumberInBlacklist"),
    )
    bad = notify.request("cus_bad", "sms", priority="transactional")
    black = notify.request("cus_black", "sms", priority="transactional")
    await notify.send(bad)
    await notify.send(black)
    for request in (bad, black):
        touch = await notify.touch(request.touch_key)
        assert (touch.status, touch.reason_code) == ("failed", "permanent_error")
    await notify.tick(timedelta(days=1))
    assert len([s for s in fake.of("sms_tencent") if s.body["SessionContext"] in (bad.touch_key, black.touch_key)]) == 2
    again = notify.request("cus_black", "sms", priority="transactional")
    await notify.send(again)
    assert (await notify.touch(again.touch_key)).reason_code == "unsubscribed"


async def test_provider_flow_control_defers_instead_of_hammering(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("sms", provider="aliyun", access_key_id="LTAI-test", sign_name="Shop", template_code="SMS_9")
    await notify.customer("cus_flow", phone=PHONE, sms="subscribed")
    fake.fail_next("sms_aliyun", Step("isv.DAY_LIMIT_CONTROL"))
    request = notify.request("cus_flow", "sms", priority="transactional")
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert touch.status == "deferred" and touch.due_at is not None
    assert touch.due_at.hour == 16  # midnight in Beijing
    await notify.tick(timedelta(hours=12, seconds=1))
    assert (await notify.touch(request.touch_key)).status == "sent"


async def test_exhausted_retries_fail_the_touch_and_dead_letter_it(isolated_db_url: str, fake: FakeProviders) -> None:
    async for h in harness(isolated_db_url, fake.url, max_attempts=2, circuit_threshold=50):
        await h.configure("webhook")
        await h.customer("cus_dlq")
        fake.fail_next("webhook", Step(503), Step(503))
        request = h.request("cus_dlq", "webhook", priority="transactional")
        await h.send(request)
        await h.tick(timedelta(seconds=5))
        touch = await h.touch(request.touch_key)
        assert (touch.status, touch.reason_code, touch.attempts) == ("failed", "retries_exhausted", 2)
        rows = await h.sql("SELECT topic FROM notify.outbox WHERE headers->>'dlq.touch_key' = :k", k=request.touch_key)
        # In the same transaction as the failure, on its way to notify.dlq (no relay reads this database).
        assert rows == [("notify.dlq",)]


async def test_wecom_token_is_cached_and_refreshed_on_expiry(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("wecom", corp_id="ww-test", agent_id=1000002)
    for n in range(3):
        await notify.customer(
            f"cus_w{n}", wecom_external_userid=f"wm_{n}", wecom_staff_ids=["zhang"], owner_staff_id="zhang"
        )
    tokens_before = len(fake.tokens)
    await notify.send(notify.request("cus_w0", "wecom"), notify.request("cus_w1", "wecom"))
    assert len(fake.tokens) == tokens_before + 1, "one token for both sends"
    fake.expire_tokens()
    third = notify.request("cus_w2", "wecom")
    await notify.send(third)
    touch = await notify.touch(third.touch_key)
    assert touch.status == "sent" and touch.provider_message_id
    last = fake.of("wecom")[-1]
    assert last.body == {
        "chat_type": "single",
        "external_userid": ["wm_2"],
        "sender": "zhang",
        "text": {"content": last.body["text"]["content"]},
    }


async def test_wecom_mass_message_limit_defers_the_second_of_the_day(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("wecom", corp_id="ww-test")
    await notify.customer("cus_mass", wecom_external_userid="wm_m", wecom_staff_ids=["li"])
    first, second = notify.request("cus_mass", "wecom"), notify.request("cus_mass", "wecom")
    await notify.send(first, second)
    assert (await notify.touch(first.touch_key)).status == "sent"
    deferred = await notify.touch(second.touch_key)
    assert (deferred.status, deferred.reason_code) == ("deferred", "platform_limit")
    await notify.tick(timedelta(hours=21))  # 09:00 next day in Shanghai: new day, no quiet hours
    assert (await notify.touch(second.touch_key)).status == "sent"


async def test_official_account_template_message_and_unfollow_answer(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("wechat_oa", appid="wx-test")
    async with notify.sessions() as s, s.begin():
        s.add(
            TemplateRow(
                tenant_id=notify.tenant_id,
                template_id="order_shipped",
                channel="wechat_oa",
                locale="default",
                body="Shipped",
                provider_template="TPL-1",
                params={"first": "Order {{ order_id }} shipped"},
            )
        )
    await notify.customer("cus_oa", wechat_openid="o-1", official_account_follower=True)
    ok = notify.request(
        "cus_oa", "wechat_oa", template_id="order_shipped", priority="transactional", variables={"order_id": "A1"}
    )
    await notify.send(ok)
    assert (await notify.touch(ok.touch_key)).status == "sent"
    body = fake.of("wechat_oa")[-1].body
    assert body == {
        "touser": "o-1",
        "template_id": "TPL-1",
        "client_msg_id": ok.touch_key,
        "data": {"first": {"value": "Order A1 shipped"}},
    }
    fake.fail_next("wechat_oa", Step(43004))
    unfollowed = notify.request(
        "cus_oa", "wechat_oa", template_id="order_shipped", priority="transactional", variables={"order_id": "A2"}
    )
    await notify.send(unfollowed)
    assert (await notify.touch(unfollowed.touch_key)).status == "failed"
    third = notify.request(
        "cus_oa", "wechat_oa", template_id="order_shipped", priority="transactional", variables={"order_id": "A3"}
    )
    await notify.send(third)
    assert (await notify.touch(third.touch_key)).reason_code == "unsubscribed"


async def test_sendgrid_rate_limit_waits_for_the_reset_and_bad_key_opens_the_circuit(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("email", provider="sendgrid", **{"from": "shop@example.com"})
    await notify.customer("cus_mail", email="li@example.com", email_consent="subscribed")
    reset = int((notify.clock.now() + timedelta(seconds=90)).timestamp())
    fake.fail_next("email_sendgrid", Step(429, headers={"X-RateLimit-Reset": str(reset)}))
    request = notify.request("cus_mail", "email", priority="transactional")
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert touch.status == "retrying" and int(touch.due_at.timestamp()) >= reset
    await notify.tick(timedelta(seconds=91))
    assert (await notify.touch(request.touch_key)).status == "sent"
    assert fake.of("email_sendgrid")[-1].body["personalizations"][0]["custom_args"] == {"touch_key": request.touch_key}


async def test_a_missing_template_variable_fails_the_touch_with_the_reason(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("webhook")
    await notify.customer("cus_tpl", traits={"name": "Li"})
    async with notify.sessions() as s, s.begin():
        s.add(
            TemplateRow(
                tenant_id=notify.tenant_id,
                template_id="coupon",
                channel="*",
                locale="default",
                body="Hi {{ traits.name }}, your coupon {{ coupon_code }}",
            )
        )
    request = notify.request("cus_tpl", "webhook", template_id="coupon", priority="transactional", variables={})
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert (touch.status, touch.reason_code) == ("failed", "template_error")
    assert "coupon_code" in (touch.reason or "")
    assert hooks(fake, notify) == []
    good = notify.request(
        "cus_tpl", "webhook", template_id="coupon", priority="transactional", variables={"coupon_code": "C-9"}
    )
    await notify.send(good)
    assert (await notify.touch(good.touch_key)).body == "Hi Li, your coupon C-9"


async def test_receipts_move_the_touch_forward_never_back(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("webhook")
    await notify.customer("cus_rcpt")
    request = notify.request("cus_rcpt", "webhook", priority="transactional")
    await notify.send(request)
    await notify.tracked("cus_rcpt", "Message Clicked", channel="webhook", touch_key=request.touch_key)
    await notify.tracked("cus_rcpt", "Message Delivered", channel="webhook", touch_key=request.touch_key)
    assert (await notify.touch(request.touch_key)).status == "clicked"
    results = await notify.sql(
        "SELECT convert_from(value, 'UTF8')::jsonb->>'status' FROM notify.outbox "
        "WHERE convert_from(value, 'UTF8')::jsonb->>'touch_key' = :k",
        k=request.touch_key,
    )
    assert {"clicked", "delivered"} <= {r[0] for r in results} or len(results) < 3  # the relay may have sent them


async def test_staff_task_is_queued_for_the_owner_claimed_completed_or_expired(notify: NotifyHarness) -> None:
    await notify.customer("cus_vip", owner_staff_id="guide_7", tier="DT")
    request = notify.request(
        "cus_vip",
        "staff_task",
        priority="transactional",
        task={"title": "Call about the birthday gift", "suggested_words": "Happy birthday!"},
    )
    lapsing = notify.request("cus_vip", "staff_task", priority="transactional", task={"title": "Follow up"})
    await notify.send(request, lapsing)
    tasks = {t.touch_key: t for t in await notify.tasks()}
    task = tasks[request.touch_key]
    assert (task.staff_id, task.status, task.title) == ("guide_7", "open", "Call about the birthday gift")
    service = TaskService(notify.sessions, notify.clock)
    await service.claim(notify.tenant_id, task.task_id, "guide_7")
    done = await service.complete(notify.tenant_id, task.task_id, "reached", "likes the scarf")
    assert done.status == "completed"
    assert (await notify.touch(request.touch_key)).status == "completed"
    notify.clock.advance(timedelta(hours=73))
    assert await service.expire_due() >= 1
    assert (await notify.touch(lapsing.touch_key)).status == "expired"


async def test_merged_customers_keep_history_and_consent_on_the_survivor(notify: NotifyHarness) -> None:
    from scrm_contracts import CustomersMerged

    await notify.configure("webhook")
    await notify.configure("sms", provider="aliyun", access_key_id="LTAI-test", sign_name="Shop", template_code="S1")
    await notify.customer("cus_old", phone=PHONE, sms="subscribed")
    await notify.customer("cus_new")
    first = notify.request("cus_old", "webhook", priority="transactional")
    await notify.send(first)
    await notify.tracked("cus_old", "SMS Unsubscribed")
    await notify.change(
        CustomersMerged(
            event_id="merge-1",
            tenant_id=notify.tenant_id,
            customer_id="cus_new",
            merged_customer_ids=["cus_old"],
            occurred_at=notify.clock.now(),
        )
    )
    assert (await notify.touch(first.touch_key)).customer_id == "cus_new"
    await notify.customer("cus_new", phone=PHONE, sms="unknown")
    later = notify.request("cus_old", "sms", priority="transactional")
    await notify.send(later)
    touch = await notify.touch(later.touch_key)
    assert (touch.customer_id, touch.reason_code) == ("cus_new", "unsubscribed")


async def test_caps_hold_over_a_rolling_day(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("webhook")
    await notify.customer("cus_cap")
    first, second = notify.request("cus_cap", "webhook"), notify.request("cus_cap", "webhook")
    third = notify.request("cus_cap", "webhook")
    fourth = notify.request("cus_cap", "webhook")
    await notify.send(first, second, third)
    statuses = [(await notify.touch(r.touch_key)).status for r in (first, second, third)]
    assert statuses == ["sent", "sent", "suppressed"]  # default global cap: 2 a day
    assert (await notify.touch(third.touch_key)).reason_code == "frequency_cap"
    notify.clock.advance(timedelta(hours=24, seconds=1))
    await notify.send(fourth)
    assert (await notify.touch(fourth.touch_key)).status == "sent"


async def test_email_over_smtp_sends_and_a_refused_recipient_fails_for_good(notify: NotifyHarness) -> None:
    import asyncio

    from tests.fakes.notify_providers import FakeSmtp

    port = free_port()
    server = await asyncio.get_running_loop().create_server(FakeSmtp, "127.0.0.1", port)
    try:
        await notify.configure("email", provider="smtp", host="127.0.0.1", port=port, **{"from": "shop@example.com"})
        await notify.customer("cus_smtp", email="li@example.com")
        await notify.customer("cus_bounce", email="bounce@example.com")
        ok = notify.request("cus_smtp", "email", priority="transactional")
        bounced = notify.request("cus_bounce", "email", priority="transactional")
        await notify.send(ok, bounced)
        assert (await notify.touch(ok.touch_key)).status == "sent"
        assert any(ok.touch_key.replace(":", ".").encode() in m for m in FakeSmtp.messages)
        failed = await notify.touch(bounced.touch_key)
        assert (failed.status, failed.reason_code) == ("failed", "permanent_error")
        assert "refused the recipient" in (failed.reason or "")
    finally:
        server.close()


async def test_a_slow_provider_times_out_retried_only_where_the_key_dedupes(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("webhook")
    await notify.configure("sms", provider="aliyun", access_key_id="LTAI-test", sign_name="Shop", template_code="S1")
    await notify.customer("cus_slow", phone=PHONE)
    fake.fail_next("webhook", Step(delay=3))  # answers after the adapter's 2 s timeout
    fake.fail_next("sms_aliyun", Step(delay=3))
    hook = notify.request("cus_slow", "webhook", priority="transactional")
    sms = notify.request("cus_slow", "sms", priority="transactional")
    await notify.send(hook, sms)
    assert (await notify.touch(hook.touch_key)).status == "retrying"
    unknown = await notify.touch(sms.touch_key)
    assert (unknown.status, unknown.reason_code) == ("failed", "permanent_error")
    assert "outcome_unknown" in (unknown.reason or ""), "an SMS that may have gone out is never sent again"
    await notify.tick(timedelta(seconds=3))
    assert (await notify.touch(hook.touch_key)).status == "sent"
    assert fake.webhook_accepted[hook.touch_key] == 1, "the receiver saw the same key twice and kept one"
    assert len([s for s in fake.of("sms_aliyun") if s.body["OutId"] == sms.touch_key]) == 1


async def test_a_tenants_own_policy_replaces_the_defaults(notify: NotifyHarness) -> None:
    from scrm_notify.adapters.orm import PolicyRow
    from scrm_notify.domain.policy import Cap, QuietHours, TenantPolicy

    policy = TenantPolicy(global_cap=Cap(per_day=1), quiet_hours=QuietHours(start="23:00", end="07:00"))
    async with notify.sessions() as s, s.begin():
        s.add(PolicyRow(tenant_id=notify.tenant_id, policy=policy.model_dump(mode="json")))
    await notify.configure("webhook")
    await notify.customer("cus_policy")
    notify.clock.advance(timedelta(hours=10, minutes=30))  # 22:30 Shanghai: quiet by default, not for this tenant
    first, second = notify.request("cus_policy", "webhook"), notify.request("cus_policy", "webhook")
    await notify.send(first, second)
    assert (await notify.touch(first.touch_key)).status == "sent"
    assert (await notify.touch(second.touch_key)).reason_code == "frequency_cap"  # its cap is 1 a day


async def test_a_send_that_could_outlive_its_claim_is_not_started_but_retried(
    isolated_db_url: str, fake: FakeProviders
) -> None:
    # A 1 s timeout and a 2 s lease: once a slow first send has used 1.2 s of the chunk's claim, a second send
    # could still be running when the lease ends (and the scheduler would take the touch over), so it waits.
    async for h in harness(isolated_db_url, fake.url, http_timeout_seconds=1.0, send_lease_seconds=2.0):
        await h.configure("webhook")
        await h.customer("cus_lease")
        fake.fail_next("webhook", Step(delay=1.2))
        first = h.request("cus_lease", "webhook", priority="transactional")
        second = h.request("cus_lease", "webhook", priority="transactional")
        await h.send(first, second)
        assert (await h.touch(first.touch_key)).status == "sent"
        waiting = await h.touch(second.touch_key)
        assert (waiting.status, waiting.attempts) == ("retrying", 0)
        assert "lease" in (waiting.reason or "")
        assert fake.webhook_accepted[second.touch_key] == 0
        await h.tick(timedelta(seconds=3))
        assert (await h.touch(second.touch_key)).status == "sent"
        assert fake.webhook_accepted[second.touch_key] == 1
