"""The tracking API against the running ingest service, checked by what it really published on ``events.v1``."""

import asyncio
import gzip
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from scrm_stack.launcher import Stack
from tests.conftest import TenantCredentials
from tests.integration.kafka_tap import Tap, tap

NOW = "2026-11-20T08:30:00Z"


@pytest.fixture
async def events(stack: Stack) -> AsyncIterator[Tap]:
    async with tap(stack.kafka.bootstrap, "events.v1") as opened:
        yield opened


@pytest.fixture
async def ingest(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.url("ingest"), timeout=20) as client:
        yield client


def order(message_id: str | None = None, **properties: Any) -> dict[str, Any]:
    return {
        "userId": "u-1",
        "messageId": message_id or f"m-{uuid.uuid4()}",
        "event": "Order Completed",
        "timestamp": NOW,
        "properties": {"order_id": "o-1", "total": 10, "currency": "CNY", **properties},
    }


CALLS: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("track", {"event": "Viewed Lookbook", "properties": {"look": 3}}, {"type": "track", "event": "Viewed Lookbook"}),
    ("identify", {"traits": {"phone": "13800138000", "city": "杭州"}}, {"type": "identify"}),
    ("page", {"name": "Home", "properties": {"path": "/"}}, {"type": "page"}),
    ("screen", {"name": "Cart"}, {"type": "screen"}),
    ("group", {"groupId": "g-1", "traits": {"name": "Store 7"}}, {"type": "group"}),
    ("alias", {"previousId": "anon-1"}, {"type": "alias"}),
]


@pytest.mark.parametrize(("call", "extra", "expected"), CALLS, ids=[c[0] for c in CALLS])
async def test_each_call_is_published_as_sent(
    ingest: httpx.AsyncClient,
    events: Tap,
    tenant: TenantCredentials,
    call: str,
    extra: dict[str, Any],
    expected: dict[str, Any],
) -> None:
    message = {"userId": "u-7", "anonymousId": "a-7", "messageId": f"m-{call}", "timestamp": NOW, **extra}
    message["context"] = {"ip": "10.0.0.1", "library": {"name": "test"}}
    answer = await ingest.post(f"/v1/{call}", auth=(tenant.write_key, ""), json=message)
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"success": True}
    (published,) = await events.collect(tenant.tenant_id, 1)
    assert {k: published[k] for k in expected} == expected
    assert published["event_id"] == f"m-{call}"
    assert (published["user_id"], published["anonymous_id"]) == ("u-7", "a-7")
    assert published["occurred_at"].startswith("2026-11-20T08:30:00")
    assert published["context"]["library"] == {"name": "test"}
    assert published["properties"] == extra.get("properties", {})
    assert published["traits"] == extra.get("traits", {})


async def test_write_key_in_the_body_and_gzip_bodies(
    ingest: httpx.AsyncClient, events: Tap, tenant: TenantCredentials
) -> None:
    body = gzip.compress(orjson.dumps({**order("m-gz"), "writeKey": tenant.write_key}))
    answer = await ingest.post(
        "/v1/track", content=body, headers={"Content-Encoding": "gzip", "Content-Type": "application/json"}
    )
    assert answer.status_code == 200, answer.text
    (published,) = await events.collect(tenant.tenant_id, 1)
    assert published["event_id"] == "m-gz" and published["properties"]["order_id"] == "o-1"


async def test_sent_at_corrects_the_devices_clock(
    ingest: httpx.AsyncClient, events: Tap, tenant: TenantCredentials
) -> None:
    # The device's clock is a year ahead; it says it sent the event 60 s after it happened.
    message = {**order("m-skew"), "timestamp": "2027-11-20T08:29:00Z", "sentAt": "2027-11-20T08:30:00Z"}
    answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=message)
    assert answer.status_code == 200, answer.text
    (published,) = await events.collect(tenant.tenant_id, 1)
    from datetime import datetime

    occurred = datetime.fromisoformat(published["occurred_at"])
    received = datetime.fromisoformat(published["received_at"])
    assert abs((received - occurred).total_seconds() - 60) < 0.01


async def test_a_mixed_batch_accepts_the_good_and_names_the_bad(
    ingest: httpx.AsyncClient, events: Tap, tenant: TenantCredentials
) -> None:
    batch = [
        {**order("b-0"), "type": "track"},
        {**order("b-1", total=-5), "type": "track"},
        {"type": "identify", "messageId": "b-2", "traits": {"email": "x@example.com"}},
        {"type": "identify", "userId": "u-3", "messageId": "b-3", "traits": {"birthday": "not a date"}},
        {"type": "page", "userId": "u-4", "messageId": "b-4", "context": {"page": {"path": "/x"}}},
        "not an object",
    ]
    answer = await ingest.post("/v1/batch", auth=(tenant.write_key, ""), json={"batch": batch, "sentAt": NOW})
    assert answer.status_code == 207, answer.text
    body = answer.json()
    assert body["success"] is False and body["accepted"] == 2
    assert [(e["index"], e["field"]) for e in body["errors"]] == [
        (1, "batch[1].properties.total"),
        (2, "batch[2].userId"),
        (3, "batch[3].traits.birthday"),
        (5, "batch[5].body"),
    ]
    assert "negative" in body["errors"][0]["message"]
    await events.collect(tenant.tenant_id, 2)
    published = {p["event_id"]: p for p in await events.settle(tenant.tenant_id)}
    assert sorted(published) == ["b-0", "b-4"]
    # the batch's sentAt equals the item's timestamp: sent at once, so it happened when it arrived (skew corrected)
    assert published["b-0"]["occurred_at"] == published["b-0"]["received_at"]
    assert published["b-4"]["context"]["page"] == {"path": "/x"}


async def test_many_concurrent_batches_are_each_accepted_once_and_in_order(
    stack: Stack, events: Tap, tenant: TenantCredentials
) -> None:
    """32 shops' SDKs flushing at once: every request is accepted, every event lands once, and each customer's
    events keep the order they had in their request (concurrent requests share per-partition batches)."""
    requests, per_request, users = 32, 100, 10

    def body(r: int) -> dict[str, Any]:
        items = [
            {**order(f"c-{r}-{i}"), "type": "track", "userId": f"u-{i % users}", "properties": {"seq": i}}
            for i in range(per_request)
        ]
        return {"batch": [{**item, "event": "Viewed Product"} for item in items]}

    limits = httpx.Limits(max_connections=requests)
    async with httpx.AsyncClient(base_url=stack.url("ingest"), timeout=30, limits=limits) as client:
        answers = await asyncio.gather(
            *(client.post("/v1/batch", auth=(tenant.write_key, ""), json=body(r)) for r in range(requests))
        )
    assert [a.status_code for a in answers] == [200] * requests, [a.text for a in answers if a.status_code != 200]
    published = await events.collect(tenant.tenant_id, requests * per_request, timeout=60)
    ids = [p["event_id"] for p in published]
    assert len(ids) == len(set(ids)) == requests * per_request
    by_request_and_user: dict[tuple[str, str], list[int]] = {}
    for p in published:
        by_request_and_user.setdefault((p["event_id"].split("-")[1], p["user_id"]), []).append(p["properties"]["seq"])
    assert all(seqs == sorted(seqs) for seqs in by_request_and_user.values())


BAD: list[tuple[Any, str, str]] = [
    (b"{not json", "body", "valid JSON"),
    ({"messageId": "x", "event": "Viewed"}, "userId", "userId or anonymousId"),
    ({**order(), "properties": "ten yuan"}, "properties", "dictionary"),
    ({**order(), "timestamp": "2099-01-01T00:00:00Z"}, "timestamp", "future"),
    (order(total=-1), "properties.total", "negative"),
    (order(total="NaN"), "properties.total", "finite"),
    (order(total=2e9), "properties.total", "exceed"),
    ({**order(), "properties": {"total": 5}}, "properties.order_id", "required"),
    ({**order(), "userId": 12345}, "userId", "string"),
    ({"userId": "u", "type": "track"}, "event", "event name"),
]


@pytest.mark.parametrize(("message", "field", "reason"), BAD, ids=[b[1] + "-" + b[2] for b in BAD])
async def test_bad_input_is_refused_naming_the_field(
    ingest: httpx.AsyncClient, events: Tap, tenant: TenantCredentials, message: Any, field: str, reason: str
) -> None:
    content = message if isinstance(message, bytes) else orjson.dumps(message)
    answer = await ingest.post(
        "/v1/track", auth=(tenant.write_key, ""), content=content, headers={"Content-Type": "application/json"}
    )
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert error["field"] == field
    assert reason.lower() in error["message"].lower()
    assert await events.settle(tenant.tenant_id, 1.0) == []


async def test_an_all_bad_or_empty_batch_is_400(ingest: httpx.AsyncClient, tenant: TenantCredentials) -> None:
    for body, field in (({"batch": [{"type": "track"}]}, "batch[0].userId"), ({"batch": []}, "batch")):
        answer = await ingest.post("/v1/batch", auth=(tenant.write_key, ""), json=body)
        assert answer.status_code == 400 and answer.json()["error"]["field"] == field, answer.text


async def test_wrong_or_missing_write_key_is_401(ingest: httpx.AsyncClient) -> None:
    for auth in (("wk_nobody", ""), None):
        answer = await ingest.post("/v1/track", auth=auth, json=order())
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "unauthorized"


async def test_size_limits_are_413(ingest: httpx.AsyncClient, events: Tap, tenant: TenantCredentials) -> None:
    big = order(note="x" * 33_000)
    answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=big)
    assert answer.status_code == 413 and "32 KB" in answer.json()["error"]["message"]
    # one oversized item of a batch is refused alone
    batch = {"batch": [{**order("ok-1"), "type": "track"}, {**big, "type": "track"}]}
    answer = await ingest.post("/v1/batch", auth=(tenant.write_key, ""), json=batch)
    assert answer.status_code == 207 and answer.json()["errors"][0]["index"] == 1
    many = {"batch": [{**order(note="y" * 20_000), "type": "track"} for _ in range(30)]}
    answer = await ingest.post("/v1/batch", auth=(tenant.write_key, ""), json=many)
    assert answer.status_code == 413 and "500 KB" in answer.json()["error"]["message"]
    bomb = gzip.compress(b'{"batch": [' + b" " * 5_000_000 + b"]}")
    answer = await ingest.post(
        "/v1/batch", auth=(tenant.write_key, ""), content=bomb, headers={"Content-Encoding": "gzip"}
    )
    assert answer.status_code == 413
    assert [p["event_id"] for p in await events.settle(tenant.tenant_id)] == ["ok-1"]


async def test_over_the_tenants_rate_limit_is_429_with_retry_after(
    stack: Stack, ingest: httpx.AsyncClient, events: Tap, tenant: TenantCredentials
) -> None:
    subprocess.run(
        [sys.executable, "-m", "scrm_cli.main", "tenant", "rate-limit", "--tenant-id", tenant.tenant_id]
        + ["--events-per-second", "5"],
        env=stack.service_env(),
        check=True,
        capture_output=True,
    )
    batch = {"batch": [{**order(f"r-{i}"), "type": "track"} for i in range(10)]}  # the 2-second burst
    assert (await ingest.post("/v1/batch", auth=(tenant.write_key, ""), json=batch)).status_code == 200
    answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=order("r-over"))
    assert answer.status_code == 429, answer.text
    assert answer.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(answer.headers["Retry-After"]) <= 2
    assert len(await events.settle(tenant.tenant_id)) == 10


async def test_the_same_message_id_twice_is_one_order(
    stack: Stack, ingest: httpx.AsyncClient, tenant: TenantCredentials
) -> None:
    from tests.e2e.helpers import eventually

    for _ in range(2):
        answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=order("dup-1", order_id="o-dup"))
        assert answer.status_code == 200
    await ingest.post("/v1/track", auth=(tenant.write_key, ""), json={**order("after"), "event": "Viewed"})

    async def timeline() -> list[dict[str, Any]] | None:
        async with httpx.AsyncClient(base_url=stack.url("profile")) as profile:
            found = await profile.get("/v1/customers/user_id:u-1/timeline", headers=tenant.bearer)
        items = found.json().get("entries", []) if found.status_code == 200 else []
        return items if any(i.get("event") == "Viewed" for i in items) else None

    items = await eventually(timeline, what="the later event on the timeline")
    async with httpx.AsyncClient(base_url=stack.url("profile")) as profile:
        customer = (await profile.get("/v1/customers/user_id:u-1", headers=tenant.bearer)).json()
    assert customer["orders_count"] == 1, items
