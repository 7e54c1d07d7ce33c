"""One purchase flows through all four services on real Kafka and Postgres."""

import uuid
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from scrm_stack.launcher import Stack
from tests.conftest import TenantCredentials
from tests.e2e.helpers import eventually

pytestmark = pytest.mark.e2e


def order_event(user_id: str, order_id: str, total: float, message_id: str | None = None) -> dict[str, Any]:
    return {
        "userId": user_id,
        "messageId": message_id or f"msg-{uuid.uuid4()}",
        "event": "Order Completed",
        "timestamp": "2026-11-20T08:30:00Z",
        "properties": {"order_id": order_id, "total": total, "currency": "CNY"},
    }


async def point_webhook_at_sink(stack: Stack, tenant: TenantCredentials) -> None:
    async with httpx.AsyncClient(base_url=stack.url("notify")) as notify:
        answer = await notify.put(
            "/v1/channels/webhook",
            headers=tenant.bearer,
            json={"url": f"{stack.url('sink')}/hooks/{tenant.tenant_id}", "secret": stack.config.sink_secret},
        )
        assert answer.status_code == 200, answer.text


async def profile_of(stack: Stack, tenant: TenantCredentials, user_id: str) -> dict[str, Any] | None:
    async with httpx.AsyncClient(base_url=stack.url("profile")) as profile:
        answer = await profile.get(f"/v1/customers/user_id:{user_id}", headers=tenant.bearer)
    return answer.json() if answer.status_code == 200 else None


async def webhooks_for(stack: Stack, tenant: TenantCredentials) -> list[dict[str, Any]]:
    async with httpx.AsyncClient(base_url=stack.url("sink")) as sink:
        received = (await sink.get("/received")).json()
    return [r for r in received if r["hook"] == tenant.tenant_id]


async def test_order_reaches_profile_and_a_signed_welcome_webhook(stack: Stack, tenant: TenantCredentials) -> None:
    await point_webhook_at_sink(stack, tenant)
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=order_event("u-1001", "o-1", 199.0))
    assert answer.status_code == 200
    assert answer.json() == {"success": True}

    async def touched() -> dict[str, Any] | None:
        customer = await profile_of(stack, tenant, "u-1001")
        return customer if customer and customer["touches"] else None

    customer = await eventually(touched, what="the welcome touch on the customer's timeline")
    assert customer["orders_count"] == 1
    assert customer["revenue_total"] == "199.00"
    assert customer["lifecycle_stage"] == "new"
    assert customer["first_order_at"] == customer["last_order_at"] == "2026-11-20T08:30:00Z"
    assert customer["touches"][0]["status"] == "sent"
    assert customer["touches"][0]["channel"] == "webhook"

    hooks = await webhooks_for(stack, tenant)
    assert len(hooks) == 1
    assert hooks[0]["signature_valid"] is True
    assert hooks[0]["payload"]["customer_id"] == customer["customer_id"]
    assert hooks[0]["payload"]["template_id"] == "welcome"
    assert hooks[0]["touch_key"] == customer["touches"][0]["touch_key"]

    async with httpx.AsyncClient(base_url=stack.url("journey")) as journey:
        journeys = (
            await journey.get(f"/v1/customers/{customer['customer_id']}/journeys", headers=tenant.bearer)
        ).json()
    assert [i["journey_id"] for i in journeys["instances"]] == ["welcome"]
    assert journeys["instances"][0]["state"] == "completed"


async def test_same_message_posted_twice_counts_one_order(stack: Stack, tenant: TenantCredentials) -> None:
    await point_webhook_at_sink(stack, tenant)
    first = order_event("u-dup", "o-dup-1", 50.0, message_id="msg-dup-1")
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        for _ in range(2):
            answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=first)
            assert answer.status_code == 200
        # A later, different order for the same customer (same partition, so it is applied after both copies).
        await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=order_event("u-dup", "o-dup-2", 25.5))

    async def both_orders() -> dict[str, Any] | None:
        customer = await profile_of(stack, tenant, "u-dup")
        return customer if customer and customer["orders_count"] >= 2 else None

    customer = await eventually(both_orders, what="the second distinct order")
    assert customer["orders_count"] == 2
    assert customer["revenue_total"] == "75.50"
    welcome = await eventually(lambda: webhooks_for(stack, tenant), what="the welcome webhook")
    assert len(welcome) == 1, "the duplicate must not trigger a second welcome"


async def test_poison_record_goes_to_dlq_and_the_next_record_is_processed(
    stack: Stack, tenant: TenantCredentials
) -> None:
    poison = f"not json at all {uuid.uuid4()}".encode()
    good = order_event("u-after-poison", "o-ap-1", 10.0)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap)
    await producer.start()
    try:
        key = f"{tenant.tenant_id}:u-after-poison".encode()
        await producer.send_and_wait("events.v1", value=poison, key=key)
    finally:
        await producer.stop()
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        assert (await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=good)).status_code == 200

    await eventually(lambda: profile_of(stack, tenant, "u-after-poison"), what="the good record after the poison")

    consumer = AIOKafkaConsumer(bootstrap_servers=stack.kafka.bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        partitions = [TopicPartition("profile.dlq", p) for p in consumer.partitions_for_topic("profile.dlq") or []]
        if not partitions:
            await consumer._client.force_metadata_update()  # noqa: SLF001 - first metadata load
            partitions = [TopicPartition("profile.dlq", p) for p in consumer.partitions_for_topic("profile.dlq")]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found = None
        for _ in range(20):
            batches = await consumer.getmany(timeout_ms=500)
            for records in batches.values():
                for record in records:
                    if record.value == poison:
                        found = record
            if found:
                break
    finally:
        await consumer.stop()
    assert found is not None, "the poison record is in profile.dlq"
    headers = dict(found.headers)
    assert b"malformed events.v1 record" in headers["dlq.reason"]
    assert headers["dlq.topic"] == b"events.v1"
    assert headers["dlq.kind"] == b"permanent"


async def test_credentials_are_checked_and_tenants_see_only_their_own_customers(
    stack: Stack, tenant: TenantCredentials
) -> None:
    from tests.conftest import create_tenant

    other = create_tenant(stack, "other-tenant")
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        wrong = await ingest.post("/v1/track", auth=("wk_wrong", ""), json=order_event("u-iso", "o-iso", 1.0))
        assert wrong.status_code == 401
        assert wrong.json()["error"]["code"] == "unauthorized"
        ok = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=order_event("u-iso", "o-iso", 1.0))
        assert ok.status_code == 200
    await eventually(lambda: profile_of(stack, tenant, "u-iso"), what="the customer in its own tenant")
    assert await profile_of(stack, other, "u-iso") is None
    async with httpx.AsyncClient(base_url=stack.url("profile")) as profile:
        assert (await profile.get("/v1/customers/user_id:u-iso")).status_code == 401
        denied = await profile.get("/v1/customers/user_id:u-iso", headers={"Authorization": "Bearer at_nope"})
        assert denied.status_code == 401


async def test_bad_order_is_rejected_with_the_field_and_reason(stack: Stack, tenant: TenantCredentials) -> None:
    bad = order_event("u-bad", "o-bad", -5.0)
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=bad)
        assert answer.status_code == 400
        assert answer.json()["error"]["field"] == "properties.total"
        assert "negative" in answer.json()["error"]["message"]
        batch = await ingest.post(
            "/v1/batch",
            auth=(tenant.write_key, ""),
            json={
                "batch": [
                    {**order_event("u-batch", "o-b1", 5.0), "type": "track"},
                    {**bad, "type": "track"},
                ]
            },
        )
    assert batch.status_code == 207
    assert batch.json()["accepted"] == 1
    assert batch.json()["errors"] == [
        {"index": 1, "field": "batch[1].properties.total", "message": batch.json()["errors"][0]["message"]}
    ]
    customer = await eventually(lambda: profile_of(stack, tenant, "u-batch"), what="the good batch item")
    assert customer["orders_count"] == 1
    assert await profile_of(stack, tenant, "u-bad") is None
