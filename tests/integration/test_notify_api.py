"""The notify API on the running stack: configuration, templates, consents, tasks, stats, tenant isolation, and a
touch that travels through real Kafka to a fake webhook receiver."""

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from aiokafka import AIOKafkaProducer

from scrm_contracts import Contact, CustomerSnapshot, CustomerUpdated, Reachability, Topic, TouchRequest, record_key
from scrm_stack.launcher import Stack
from tests.conftest import TenantCredentials, create_tenant
from tests.e2e.helpers import eventually
from tests.fakes.notify_providers import SECRET, FakeProviders


async def api(stack: Stack, tenant: TenantCredentials, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=stack.url("notify"), headers=tenant.bearer, timeout=10) as client:
        return await client.request(method, path, **kwargs)


async def publish(stack: Stack, topic: str, key: bytes, value: bytes) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap)
    await producer.start()
    try:
        await producer.send_and_wait(topic, value=value, key=key)
    finally:
        await producer.stop()


async def customer_updated(stack: Stack, tenant_id: str, customer_id: str, **snapshot: Any) -> None:
    change = CustomerUpdated(
        event_id=f"upd-{uuid.uuid4()}",
        tenant_id=tenant_id,
        customer_id=customer_id,
        occurred_at=datetime.now(UTC),
        version=int(datetime.now(UTC).timestamp() * 1000),
        snapshot=CustomerSnapshot(**snapshot),
    )
    await publish(stack, Topic.PROFILE_CHANGES.value, record_key(tenant_id, customer_id), change.to_wire())


def touch_request(tenant_id: str, customer_id: str, channels: list[str], **fields: Any) -> TouchRequest:
    key = f"tk-{uuid.uuid4().hex[:12]}"
    return TouchRequest(
        event_id=key,
        touch_key=key,
        tenant_id=tenant_id,
        customer_id=customer_id,
        channels=channels,
        template_id=fields.pop("template_id", "welcome"),
        requested_at=datetime.now(UTC),
        variables=fields.pop("variables", {"customer_id": customer_id}),
        **fields,
    )


async def test_bad_input_is_named_by_field(stack: Stack, tenant: TenantCredentials) -> None:
    bad_policy = await api(stack, tenant, "PUT", "/v1/policy", json={"quiet_hours": {"start": "25:00"}})
    assert bad_policy.status_code == 400 and bad_policy.json()["error"]["field"] == "quiet_hours.start"
    bad_zone = await api(stack, tenant, "PUT", "/v1/policy", json={"default_timezone": "Mars/Base"})
    assert bad_zone.json()["error"]["field"] == "default_timezone"
    bad_template = await api(stack, tenant, "PUT", "/v1/templates/promo", json={"body": "Hi {{ name "})
    assert bad_template.status_code == 400 and bad_template.json()["error"]["field"] == "body"
    bad_consent = await api(stack, tenant, "PUT", "/v1/customers/cus_x/consents/pigeon", json={"status": "subscribed"})
    assert bad_consent.json()["error"]["field"] == "channel"
    missing = await api(
        stack, tenant, "PUT", "/v1/channels/sms", json={"settings": {"provider": "aliyun"}, "secret": "s" * 20}
    )
    assert missing.status_code == 400 and missing.json()["error"]["field"] == "settings.access_key_id"


async def test_channel_secrets_are_never_echoed_back_whole(stack: Stack, tenant: TenantCredentials) -> None:
    secret = "aliyun-secret-abcdefgh1234"
    answer = await api(
        stack,
        tenant,
        "PUT",
        "/v1/channels/sms",
        json={"settings": {"provider": "aliyun", "access_key_id": "LTAI", "sign_name": "Shop"}, "secret": secret},
    )
    assert answer.status_code == 200, answer.text
    assert answer.json()["secret"] == "****1234"
    listed = (await api(stack, tenant, "GET", "/v1/channels")).json()["items"]
    assert secret not in str(listed) and listed[0]["settings"]["sign_name"] == "Shop"
    webhook = await api(stack, tenant, "PUT", "/v1/channels/webhook", json={"url": "http://127.0.0.1:9/x"})
    assert webhook.json()["secret"].startswith("whsec_"), "a generated secret is shown once"
    given = await api(
        stack,
        tenant,
        "PUT",
        "/v1/channels/webhook",
        json={"url": "http://127.0.0.1:9/x", "secret": "my-own-secret-0987"},
    )
    assert given.json()["secret"] == "****0987"


async def test_templates_crud_and_preview(stack: Stack, tenant: TenantCredentials) -> None:
    body = {
        "channel": "sms",
        "locale": "zh-CN",
        "body": "{{ name }}，您的优惠券 {{ code }}，回T退订",
        "provider_template": "SMS_1",
        "params": {"code": "{{ code }}"},
    }
    saved = await api(stack, tenant, "PUT", "/v1/templates/coupon", json=body)
    assert saved.status_code == 200, saved.text
    preview = await api(
        stack,
        tenant,
        "POST",
        "/v1/templates/preview",
        json={"template_id": "coupon", "channel": "sms", "locale": "zh-CN", "variables": {"name": "李", "code": "C9"}},
    )
    assert preview.json()["text"] == "李，您的优惠券 C9，回T退订" and preview.json()["params"] == {"code": "C9"}
    missing = await api(
        stack,
        tenant,
        "POST",
        "/v1/templates/preview",
        json={"template_id": "coupon", "channel": "sms", "locale": "zh-CN", "variables": {"name": "李"}},
    )
    assert missing.status_code == 400 and "code" in missing.json()["error"]["message"]
    assert [t["locale"] for t in (await api(stack, tenant, "GET", "/v1/templates/coupon")).json()["items"]] == ["zh-CN"]
    gone = await api(stack, tenant, "DELETE", "/v1/templates/coupon", params={"channel": "sms", "locale": "zh-CN"})
    assert gone.status_code == 204
    assert (await api(stack, tenant, "GET", "/v1/templates/coupon")).status_code == 404


async def test_consents_can_be_read_and_set_and_tenants_are_isolated(stack: Stack, tenant: TenantCredentials) -> None:
    await customer_updated(
        stack,
        tenant.tenant_id,
        "cus_cons",
        contact=Contact(phone="13800138000"),
        reachability=Reachability(sms="subscribed"),
    )

    async def sms_consent() -> str | None:
        answer = await api(stack, tenant, "GET", "/v1/customers/cus_cons/consents")
        if answer.status_code != 200:
            return None
        return next(i["status"] for i in answer.json()["items"] if i["channel"] == "sms")

    assert await eventually(sms_consent, what="the customer in notify's directory") == "subscribed"
    put = await api(stack, tenant, "PUT", "/v1/customers/cus_cons/consents/sms", json={"status": "unsubscribed"})
    assert put.status_code == 200
    assert await sms_consent() == "unsubscribed"
    other = create_tenant(stack, "notify-other")
    assert (await api(stack, other, "GET", "/v1/customers/cus_cons/consents")).status_code == 404
    assert (await api(stack, other, "GET", "/v1/touches", params={"customer_id": "cus_cons"})).json()["items"] == []
    async with httpx.AsyncClient(base_url=stack.url("notify")) as client:
        assert (await client.get("/v1/touches")).status_code == 401


async def test_a_touch_travels_kafka_to_the_webhook_and_shows_in_touches_stats_and_tasks(
    stack: Stack, tenant: TenantCredentials, fake: FakeProviders
) -> None:
    url = f"{fake.url}/hook/{tenant.tenant_id}"
    assert (
        await api(stack, tenant, "PUT", "/v1/channels/webhook", json={"url": url, "secret": SECRET})
    ).status_code == 200
    await customer_updated(stack, tenant.tenant_id, "cus_k", owner_staff_id="guide_1")
    sent = touch_request(tenant.tenant_id, "cus_k", ["webhook"], priority="transactional", journey_id="j-k")
    task = touch_request(
        tenant.tenant_id,
        "cus_k",
        ["staff_task"],
        priority="transactional",
        journey_id="j-k",
        task={"title": "Call Li", "due_at": (datetime.now(UTC) + timedelta(days=1)).isoformat()},
    )
    nowhere = touch_request(tenant.tenant_id, "cus_k", ["sms"], journey_id="j-k2")  # sms is not configured
    for request in (sent, sent, task, nowhere):  # the duplicate is a redelivery
        await publish(stack, Topic.TOUCH_REQUESTS.value, record_key(tenant.tenant_id, "cus_k"), request.to_wire())

    async def settled() -> list[dict[str, Any]] | None:
        items = (await api(stack, tenant, "GET", "/v1/touches", params={"journey_id": "j-k"})).json()["items"]
        return items if len(items) == 2 and all(i["status"] == "sent" for i in items) else None

    touches = await eventually(settled, what="both touches sent")
    assert {t["channel"] for t in touches} == {"webhook", "staff_task"}
    assert fake.webhook_accepted[sent.touch_key] == 1 and fake.webhook_duplicates == 0
    tasks = (await api(stack, tenant, "GET", "/v1/tasks", params={"staff_id": "guide_1"})).json()["items"]
    assert [t["title"] for t in tasks] == ["Call Li"]
    task_id = tasks[0]["task_id"]
    assert (
        await api(stack, tenant, "POST", f"/v1/tasks/{task_id}/claim", json={"staff_id": "guide_1"})
    ).status_code == 200
    taken = await api(stack, tenant, "POST", f"/v1/tasks/{task_id}/claim", json={"staff_id": "guide_2"})
    assert taken.status_code == 400 and taken.json()["error"]["code"] == "conflict"
    done = await api(stack, tenant, "POST", f"/v1/tasks/{task_id}/complete", json={"outcome": "reached"})
    assert done.json()["status"] == "completed"
    stats = (await api(stack, tenant, "GET", "/v1/stats/touches")).json()
    assert {"key": "webhook", "status": "sent", "count": 1} in stats["by_channel"]
    assert {"key": "staff_task", "status": "completed", "count": 1} in stats["by_channel"]
    assert stats["by_reason"] == [{"key": "no_channel_configured", "status": "suppressed", "count": 1}]
    other = create_tenant(stack, "notify-other-tasks")
    assert (await api(stack, other, "GET", "/v1/tasks", params={"staff_id": "guide_1"})).json()["items"] == []
    assert (await api(stack, other, "POST", f"/v1/tasks/{task_id}/complete", json={"outcome": "x"})).status_code == 404
