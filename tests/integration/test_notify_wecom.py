"""WeCom's two phases and the welcome message, in-process on the real PostgreSQL against the fake WeCom, on a
virtual clock: a mass message is only a task for the staff member until WeCom says what became of each recipient;
a new contact gets the tenant's welcome message at once, once."""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer

from scrm_contracts import CustomerErased, record_key
from scrm_kit.kafka import ConsumerRunner
from scrm_kit.settings import KafkaSettings
from scrm_notify.adapters.orm import TemplateRow
from scrm_notify.service.wecom_results import WeComResults
from scrm_notify.settings import WeComSettings
from scrm_stack.launcher import Stack
from tests.fakes.notify_providers import FakeProviders, Step
from tests.integration.kafka_tap import create_topic
from tests.integration.notify_harness import NotifyHarness, harness

TASK = "externalcontact/get_groupmsg_task"
SEND_RESULT = "externalcontact/get_groupmsg_send_result"
WELCOME = "externalcontact/send_welcome_msg"


@pytest.fixture
async def notify(isolated_db_url: str, fake: FakeProviders) -> AsyncIterator[NotifyHarness]:
    fake.script.clear()
    fake.wecom_send_time = None
    async for h in harness(isolated_db_url, fake.url):
        yield h


async def handed_to_staff(notify: NotifyHarness, customer_id: str, external_userid: str) -> tuple[str, str]:
    """A marketing touch on WeCom for a customer of staff member zhang: the task is created; (touch key, msgid)."""
    await notify.configure("wecom", corp_id="ww-test", agent_id=1000002)
    await notify.customer(
        customer_id, wecom_external_userid=external_userid, wecom_staff_ids=["zhang"], owner_staff_id="zhang"
    )
    request = notify.request(customer_id, "wecom")
    await notify.send(request)
    touch = await notify.touch(request.touch_key)
    assert touch.status == "sent" and touch.provider_message_id, "success only created a task for the staff member"
    return request.touch_key, touch.provider_message_id


async def poll(notify: NotifyHarness, advance: timedelta) -> None:
    """Move the clock on and let the poller read everything due (of every tenant: it serves them all)."""
    notify.clock.advance(advance)
    while await notify.wecom_results.poll():
        pass


def reads(fake: FakeProviders, path: str, msgid: str) -> list[dict[str, Any]]:
    return [s.body for s in fake.of("wecom") if s.path == path and s.body.get("msgid") == msgid]


async def published(notify: NotifyHarness, touch_key: str) -> list[tuple[str, str | None]]:
    """The results notify put on its way to touches.results.v1 for a touch (no relay reads this database)."""
    rows = await notify.sql(
        "SELECT convert_from(value, 'UTF8')::jsonb FROM notify.outbox WHERE topic = 'touches.results.v1' "
        "AND convert_from(value, 'UTF8')::jsonb->>'touch_key' = :k ORDER BY id",
        k=touch_key,
    )
    return [(r["status"], r.get("reason")) for (r,) in rows]


# --- phase two of mass messages ---------------------------------------------------------------------------------


async def test_mass_message_is_delivered_once_the_staff_member_sends_it(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    # (The poller serves every tenant: assertions look at this test's message only.)
    key, msgid = await handed_to_staff(notify, "cus_m1", "wm_m1")
    await poll(notify, timedelta(seconds=30))
    assert reads(fake, TASK, msgid) == [], "nothing is read before the first check is due"
    await poll(notify, timedelta(seconds=31))
    assert reads(fake, TASK, msgid) == [{"msgid": msgid, "limit": 500}]
    assert reads(fake, SEND_RESULT, msgid) == [], "the sender has not sent it: no per-recipient read"
    assert (await notify.touch(key)).status == "sent"
    fake.mass_status("wm_m1", 1)
    await poll(notify, timedelta(minutes=4))
    assert len(reads(fake, TASK, msgid)) == 1, "backoff: the second check is 5 minutes after the first"
    await poll(notify, timedelta(minutes=1))
    assert len(reads(fake, TASK, msgid)) == 2
    assert reads(fake, SEND_RESULT, msgid) == [{"msgid": msgid, "userid": "zhang", "limit": 500}]
    touch = await notify.touch(key)
    assert (touch.status, touch.reason_code) == ("delivered", None)
    assert [s for s, _ in await published(notify, key)] == ["sent", "delivered"]
    await poll(notify, timedelta(hours=2))
    assert len(reads(fake, TASK, msgid)) == 2, "a settled message is not read again"


async def test_not_a_friend_any_more_fails_the_touch_and_revokes_wecom(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    key, _ = await handed_to_staff(notify, "cus_m2", "wm_m2")
    fake.mass_status("wm_m2", 2)
    await poll(notify, timedelta(minutes=1))
    touch = await notify.touch(key)
    assert (touch.status, touch.reason_code) == ("failed", "wecom_not_friend")
    assert ("failed", f"wecom_not_friend: {touch.reason}") in await published(notify, key)
    consent = await notify.sql(
        "SELECT status FROM notify.consents WHERE tenant_id = :t AND customer_id = 'cus_m2' AND channel = 'wecom'",
        t=notify.tenant_id,
    )
    assert consent == [("blocked",)]
    again = notify.request("cus_m2", "wecom")
    await notify.send(again)
    assert (await notify.touch(again.touch_key)).status == "suppressed", "no more WeCom messages to a lost contact"


async def test_over_quota_fails_the_touch_and_holds_wecom_marketing_until_next_month(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    key, _ = await handed_to_staff(notify, "cus_m3", "wm_m3")
    fake.mass_status("wm_m3", 3)
    fake.wecom_send_time = int((notify.clock.now() + timedelta(minutes=1)).timestamp())
    await poll(notify, timedelta(minutes=1))
    touch = await notify.touch(key)
    assert (touch.status, touch.reason_code) == ("failed", "wecom_over_quota")
    assert [s for s, _ in await published(notify, key)] == ["sent", "failed"]
    # The next day the per-day limit would let a WeCom message through; WeCom's answer holds until the month resets.
    notify.clock.advance(timedelta(days=1))
    later = notify.request("cus_m3", "wecom")
    await notify.send(later)
    held = await notify.touch(later.touch_key)
    assert (held.status, held.reason_code) == ("deferred", "platform_limit")
    assert "status 3" in (held.reason or "")
    assert held.due_at == datetime(2031, 3, 31, 16, 0, tzinfo=UTC)  # 1 April 00:00 in Shanghai


async def test_a_task_the_staff_member_never_sends_is_polled_with_backoff_then_given_up(
    isolated_db_url: str, fake: FakeProviders
) -> None:
    async for h in harness(isolated_db_url, fake.url, WeComSettings(result_give_up_hours=3)):
        key, msgid = await handed_to_staff(h, "cus_m4", "wm_m4")
        waits = []
        while due := await h.sql(
            "SELECT next_check_at FROM notify.wecom_mass_checks WHERE tenant_id = :t", t=h.tenant_id
        ):
            waits.append(due[0][0] - h.clock.now())
            await poll(h, waits[-1])
        # 1 min, 5 min, 30 min, then hourly; the last read exactly at the give-up time (3 h after the task).
        assert waits == [timedelta(seconds=s) for s in (60, 300, 1800, 3600, 3600, 1440)]
        assert len(reads(fake, TASK, msgid)) == 6
        touch = await h.touch(key)
        assert (touch.status, touch.reason_code) == ("failed", "wecom_not_sent")
        assert [s for s, _ in await published(h, key)] == ["sent", "failed"]
        assert await h.sql("SELECT 1 FROM notify.wecom_mass_checks WHERE tenant_id = :t", t=h.tenant_id) == []


async def test_two_pollers_side_by_side_read_each_task_once_per_due_time(
    isolated_db_url: str, fake: FakeProviders
) -> None:
    async for h in harness(isolated_db_url, fake.url, WeComSettings(result_poll_batch=2)):
        msgids = [(await handed_to_staff(h, f"cus_p{n}", f"wm_p{n}"))[1] for n in range(6)]
        other = WeComResults(h.sessions, h.wecom_results.adapter, h.clock, h.settings.wecom)
        for advance, expected in ((timedelta(minutes=1), 1), (timedelta(minutes=5), 2)):
            h.clock.advance(advance)
            while sum(await asyncio.gather(h.wecom_results.poll(), other.poll())):
                pass  # until neither finds anything due (other tenants' checks included)
            assert [len(reads(fake, TASK, m)) for m in msgids] == [expected] * 6, "each task read once per due time"


async def test_results_are_read_page_by_page(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("wecom", corp_id="ww-test")
    fake.wecom_mass["msg-paged"] = ("zhang", ["wm_a", "wm_b", "wm_c"])
    for recipient, status in (("wm_a", 1), ("wm_b", 2), ("wm_c", 3)):
        fake.mass_status(recipient, status)
    credentials = await _credentials(notify)
    answer = await notify.wecom_results.adapter.mass_results(credentials, "msg-paged", "zhang", 1)
    assert answer.error is None and answer.sent_by == {"zhang"}
    assert answer.statuses == {"wm_a": 1, "wm_b": 2, "wm_c": 3}
    cursors = [b.get("cursor") for b in reads(fake, SEND_RESULT, "msg-paged")]
    assert cursors == [None, "1", "2"]


async def _credentials(notify: NotifyHarness) -> Any:
    from scrm_notify.adapters import touches

    async with notify.sessions() as session:
        return await touches.credentials(session, notify.tenant_id, "wecom")


# --- the welcome message -----------------------------------------------------------------------------------------


async def welcome_template(notify: NotifyHarness, body: str = "Hi {{ traits.name }}, welcome!") -> None:
    async with notify.sessions() as s, s.begin():
        s.add(
            TemplateRow(
                tenant_id=notify.tenant_id, template_id="wecom_welcome", channel="*", locale="default", body=body
            )
        )


def welcomes(fake: FakeProviders, code: str) -> list[dict[str, Any]]:
    return [s.body for s in fake.of("wecom") if s.path == WELCOME and s.body["welcome_code"] == code]


async def test_welcome_is_sent_at_once_and_a_redelivery_sends_nothing_twice(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("wecom", corp_id="ww-test")
    await welcome_template(notify)
    await notify.customer("cus_w1", wecom_external_userid="wm_w1", traits={"name": "Li"})
    code = fake.welcome_code()
    event = notify.contact_added("wm_w1", code)
    await notify.events(event)
    await notify.events(event)  # at-least-once delivery from Kafka
    assert welcomes(fake, code) == [{"welcome_code": code, "text": {"content": "Hi Li, welcome!"}}]
    touch = await notify.touch(f"welcome:{event.event_id}")
    assert (touch.status, touch.channel, touch.customer_id, touch.body) == (
        "sent",
        "wecom",
        "cus_w1",
        "Hi Li, welcome!",
    )
    assert [s for s, _ in await published(notify, touch.touch_key)] == ["sent"]


async def test_an_expired_welcome_code_is_skipped_with_its_reason(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("wecom", corp_id="ww-test")
    await welcome_template(notify, "Welcome!")
    code = fake.welcome_code()
    event = notify.contact_added("wm_w2", code, age=timedelta(seconds=25))
    await notify.events(event)
    assert welcomes(fake, code) == [], "a code past its 20 seconds is not tried"
    touch = await notify.touch(f"welcome:{event.event_id}")
    assert (touch.status, touch.reason_code) == ("suppressed", "welcome_code_expired")
    assert touch.customer_id == "wecom:wm_w2", "a customer notify does not know yet: provisional id"
    assert [s for s, _ in await published(notify, touch.touch_key)] == ["suppressed"]
    await notify.customer("cus_w2", wecom_external_userid="wm_w2")
    assert (await notify.touch(touch.touch_key)).customer_id == "cus_w2", "their first snapshot claims the touch"


async def test_used_and_invalid_codes_are_recorded_as_permanent_failures(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("wecom", corp_id="ww-test")
    await welcome_template(notify, "Welcome!")
    used, stale = fake.welcome_code(), fake.welcome_code()
    fake.welcome_used.add(used)  # the customer is already chatting with the staff member
    fake.welcome_codes[stale] -= 60  # WeCom's own clock says it ran out
    first, second = notify.contact_added("wm_w3", used), notify.contact_added("wm_w4", stale)
    await notify.events(first, second)
    for event, code in ((first, "welcome_code_used"), (second, "welcome_code_expired")):
        touch = await notify.touch(f"welcome:{event.event_id}")
        assert (touch.status, touch.reason_code) == ("failed", code)
        assert "41051" in (touch.reason or "") if code == "welcome_code_used" else "41050" in (touch.reason or "")
        assert [s for s, _ in await published(notify, touch.touch_key)] == ["failed"]
    assert len(welcomes(fake, used)) == 1 and len(welcomes(fake, stale)) == 1, "permanent: never retried"


async def test_busy_is_retried_once_inside_the_window(notify: NotifyHarness, fake: FakeProviders) -> None:
    await notify.configure("wecom", corp_id="ww-test")
    await welcome_template(notify, 'Welcome{{ traits.name | default("") }}!')  # renders for a customer not known yet
    lucky, unlucky = fake.welcome_code(), fake.welcome_code()
    fake.fail_next("wecom", Step(-1))
    event = notify.contact_added("wm_w5", lucky)
    await notify.events(event)
    assert [w["text"]["content"] for w in welcomes(fake, lucky)] == ["Welcome!", "Welcome!"]
    assert (await notify.touch(f"welcome:{event.event_id}")).status == "sent"
    fake.fail_next("wecom", Step(-1), Step(-1))
    event = notify.contact_added("wm_w6", unlucky)
    await notify.events(event)
    assert len(welcomes(fake, unlucky)) == 2, "at most one immediate retry"
    touch = await notify.touch(f"welcome:{event.event_id}")
    assert (touch.status, touch.reason_code) == ("failed", "provider_unavailable")


async def test_no_welcome_without_a_template_and_never_to_an_erased_customer(
    notify: NotifyHarness, fake: FakeProviders
) -> None:
    await notify.configure("wecom", corp_id="ww-test")
    code = fake.welcome_code()
    quiet = notify.contact_added("wm_w7", code)
    await notify.events(quiet)
    assert (
        welcomes(fake, code) == []
        and await notify.sql("SELECT 1 FROM notify.touches WHERE tenant_id = :t", t=notify.tenant_id) == []
    ), "a tenant without a welcome template gets nothing, not even a record"
    await welcome_template(notify, "Welcome!")
    await notify.change(
        CustomerErased(
            event_id="erase-w", tenant_id=notify.tenant_id, customer_id="cus_gone", occurred_at=notify.clock.now()
        )
    )
    erased = notify.contact_added("wm_w8", code).model_copy(update={"customer_id": "cus_gone"})
    await notify.events(erased)
    assert welcomes(fake, code) == []
    touch = await notify.touch(f"welcome:{erased.event_id}")
    assert (touch.status, touch.reason_code) == ("suppressed", "customer_erased")
    # A welcome already sent goes with the customer when they are erased, provisional id included.
    await notify.customer("cus_w9", wecom_external_userid="wm_w9")
    sent = notify.contact_added("wm_w9", fake.welcome_code())
    await notify.events(sent)
    await notify.change(
        CustomerErased(
            event_id="erase-w9", tenant_id=notify.tenant_id, customer_id="cus_w9", occurred_at=notify.clock.now()
        )
    )
    assert (
        await notify.sql(
            "SELECT 1 FROM notify.touches WHERE tenant_id = :t AND touch_key = :k",
            t=notify.tenant_id,
            k=f"welcome:{sent.event_id}",
        )
        == []
    )


async def test_welcome_through_a_real_kafka_consumer_group(
    stack: Stack, isolated_db_url: str, fake: FakeProviders
) -> None:
    """The consumer as bootstrap runs it (its own group, starting at the end of the topic) on the real broker."""
    async for h in harness(isolated_db_url, fake.url):
        await h.configure("wecom", corp_id="ww-test")
        await welcome_template(h, "Welcome!")
        topic = f"events-welcome-{uuid.uuid4().hex[:8]}"
        await create_topic(stack.kafka.bootstrap, topic)
        producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap)
        await producer.start()
        runner = ConsumerRunner(
            settings=KafkaSettings(bootstrap_servers=stack.kafka.bootstrap),
            group=f"notify-welcome-{uuid.uuid4().hex[:8]}",
            topics=[topic],
            handler=h.welcome,
            producer=producer,
            fetch_max_wait_ms=50,
            auto_offset_reset="latest",
        )
        await runner.start()
        try:
            for _ in range(300):
                if runner.ready:
                    break
                await asyncio.sleep(0.1)
            await asyncio.sleep(1.0)  # positions fetched: "latest" is now where the group starts
            code = fake.welcome_code()
            event = h.contact_added("wm_k1", code)
            await producer.send_and_wait(topic, event.to_wire(), key=record_key(h.tenant_id, "wecom:wm_k1"))
            touch_key = f"welcome:{event.event_id}"
            for _ in range(200):
                rows = await h.sql(
                    "SELECT status FROM notify.touches WHERE tenant_id = :t AND touch_key = :k",
                    t=h.tenant_id,
                    k=touch_key,
                )
                if rows and rows[0][0] != "sending":
                    break
                await asyncio.sleep(0.1)
            assert rows == [("sent",)]
            assert len(welcomes(fake, code)) == 1
        finally:
            await runner.stop()
            await producer.stop()
