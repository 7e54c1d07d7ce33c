"""Ingest as real clients use it: the Segment Python SDK unchanged, a schema fuzzer, a broker that goes away,
and the bulk import command."""

import asyncio
import base64
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from segment.analytics.client import Client

from scrm_stack.kafka import KafkaBroker
from scrm_stack.launcher import REPO_ROOT, Stack, free_port
from scrm_stack.topics import ensure_topics
from tests.conftest import TenantCredentials
from tests.e2e.helpers import eventually
from tests.integration.fuzzing import fuzz, operations
from tests.integration.kafka_tap import Tap, tap


@pytest.fixture
async def events(stack: Stack) -> AsyncIterator[Tap]:
    async with tap(stack.kafka.bootstrap, "events.v1") as opened:
        yield opened


async def test_the_segment_python_sdk_sends_unchanged(stack: Stack, events: Tap, tenant: TenantCredentials) -> None:
    client = Client(write_key=tenant.write_key, host=stack.url("ingest"), sync_mode=True, gzip=True, max_retries=1)
    failures: list[Any] = []
    client.on_error = lambda error, items: failures.append(error)
    client.identify("sdk-user", {"email": "sdk@example.com", "city": "苏州"})
    client.track("sdk-user", "Order Completed", {"order_id": "sdk-o1", "revenue": 88.5, "currency": "CNY"})
    client.page("sdk-user", "Docs", "Home", {"path": "/"})
    client.flush()
    assert failures == []
    published = {p["type"]: p for p in await events.collect(tenant.tenant_id, 3)}
    assert published["identify"]["traits"]["email"] == "sdk@example.com"
    assert published["track"]["properties"]["revenue"] == 88.5
    assert published["track"]["context"]["library"]["name"] == "analytics-python"
    assert published["page"]["user_id"] == "sdk-user"


TRACKING = re.compile(r"^/v1/(track|identify|page|screen|group|alias|batch)$")


def test_fuzzed_requests_never_get_a_server_error(stack: Stack, fuzz_tenant: TenantCredentials) -> None:
    """Property-based fuzz of every ingest endpoint from the service's own OpenAPI schema (schemathesis): the
    tracking API answers only its documented statuses; callbacks and their configuration never answer 5xx."""
    token = base64.b64encode(f"{fuzz_tenant.write_key}:".encode()).decode()
    found = operations(stack.url("ingest"))
    assert sum(bool(TRACKING.match(o.path)) for o in found) == 7, [o.label for o in found]
    for operation in found:
        allowed = (200, 207, 400, 413, 429) if TRACKING.match(operation.path) else None
        fuzz(operation, {"Authorization": f"Basic {token}"}, allowed)


@pytest.fixture(scope="module")
def fuzz_tenant(stack: Stack) -> TenantCredentials:
    from tests.conftest import create_tenant

    return create_tenant(stack, "fuzz")


@pytest.fixture
def lone_ingest(stack: Stack) -> Iterator[tuple[KafkaBroker, str]]:
    """An ingest process of its own, on a broker of its own that the test can take away."""
    state = Path(tempfile.mkdtemp(prefix="kafka-down-"))
    broker = KafkaBroker(state / "kafka", REPO_ROOT / ".cache", free_port(), free_port())
    broker.start()
    port = free_port()
    env = {
        **stack.service_env(),
        "SCRM_KAFKA__BOOTSTRAP_SERVERS": broker.bootstrap,
        "SCRM_KAFKA__REQUEST_TIMEOUT_MS": "3000",
        "SCRM_KAFKA_ACK_TIMEOUT_SECONDS": "3",
        "SCRM_ROLES": "api",
    }
    asyncio.run(ensure_topics(broker.bootstrap, 1, 1))
    args = ["-m", "uvicorn", "--factory", "scrm_ingest.entrypoints.api:app", "--port", str(port)]
    process = subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(150):
            try:
                if httpx.get(f"{url}/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        yield broker, url
    finally:
        process.terminate()
        process.wait(30)
        broker.stop()


async def test_kafka_down_is_503_and_accepts_nothing(
    lone_ingest: tuple[KafkaBroker, str], tenant: TenantCredentials
) -> None:
    broker, url = lone_ingest
    order = {"userId": "k1", "messageId": "kd-1", "event": "Viewed", "timestamp": "2026-11-20T08:30:00Z"}
    async with httpx.AsyncClient(base_url=url, timeout=30) as ingest:
        assert (await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=order)).status_code == 200
        broker.stop()
        answer = await ingest.post("/v1/track", auth=(tenant.write_key, ""), json={**order, "messageId": "kd-2"})
        assert answer.status_code == 503, answer.text
        assert answer.json()["error"]["code"] == "unavailable"
        readiness = await ingest.get("/readyz")
        assert readiness.status_code == 503


def _import(stack: Stack, path: Path, tenant: TenantCredentials) -> tuple[int, dict[str, Any]]:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "scrm_cli.main",
            "import",
            "orders",
            str(path),
            "--tenant-id",
            tenant.tenant_id,
            "--json",
        ],
        env={**stack.service_env(), "NO_COLOR": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


async def test_import_orders_reports_rejects_and_adds_nothing_the_second_time(
    stack: Stack, tenant: TenantCredentials, tmp_path: Path
) -> None:
    lines = ["customer_id,order_id,occurred_at,total,currency,phone"]
    lines += [f"imp-{i % 3},io-{i},2025-0{1 + i % 9}-10T10:00:00Z,{10 + i}.00,CNY," for i in range(30)]
    lines += ["imp-0,io-bad,2025-01-01T00:00:00Z,-3,CNY,", "imp-1,,2025-01-01T00:00:00Z,3,CNY,"]
    lines += ["imp-2,io-ph,2025-01-01T00:00:00Z,5,CNY,13900139000"]
    csv_file = tmp_path / "orders.csv"
    csv_file.write_text("\n".join(lines) + "\n")
    code, report = _import(stack, csv_file, tenant)
    assert code == 3 and (report["accepted"], report["rejected"]) == (31, 2)
    rejects = Path(report["rejects_file"]).read_text().splitlines()
    assert rejects[1].startswith("32,total,") and rejects[2].startswith("33,order_id,is required")

    ndjson = tmp_path / "more.ndjson"
    ndjson.write_text(
        json.dumps(
            {
                "customer_id": "imp-0",
                "order_id": "io-n1",
                "occurred_at": "2025-03-01T00:00:00Z",
                "total": 7,
                "currency": "CNY",
            }
        )
        + "\n{broken\n"
    )
    code, report = _import(stack, ndjson, tenant)
    assert code == 3 and (report["accepted"], report["rejected"]) == (1, 1)
    code, report = _import(stack, csv_file, tenant)  # the same file again
    assert report["accepted"] == 31

    # A later event of each customer, on the same partitions as their orders: once the profile shows it, the
    # second import's records were applied before it.
    async with httpx.AsyncClient(base_url=stack.url("ingest")) as ingest:
        for i in range(3):
            viewed = {"userId": f"imp-{i}", "messageId": f"after-{i}", "event": "Viewed After Import"}
            assert (await ingest.post("/v1/track", auth=(tenant.write_key, ""), json=viewed)).status_code == 200

    async def settled() -> list[dict[str, Any]] | None:
        async with httpx.AsyncClient(base_url=stack.url("profile")) as profile:
            timelines = [
                (await profile.get(f"/v1/customers/user_id:imp-{i}/timeline", headers=tenant.bearer)).json()
                for i in range(3)
            ]
            seen = all(any(e.get("event") == "Viewed After Import" for e in t.get("entries", [])) for t in timelines)
            if not seen:
                return None
            return [
                (await profile.get(f"/v1/customers/user_id:imp-{i}", headers=tenant.bearer)).json() for i in range(3)
            ]

    customers = await eventually(settled, timeout=90, what="the imported orders and the later events on the profiles")
    assert [c["orders_count"] for c in customers] == [11, 10, 11]
    expected = sum(10 + i for i in range(30) if i % 3 == 0) + 7
    assert float(customers[0]["revenue_total"]) == expected
    assert customers[2]["identities"].get("phone") == ["+8613900139000"]
