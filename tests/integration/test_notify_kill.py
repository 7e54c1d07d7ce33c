"""Kill notify mid-batch (SIGKILL) and restart it: no customer gets a message twice.

A database, request topic and consumer groups of its own keep these notify processes and the stack's notify apart:
the stack's scheduler, which wakes the due touches of every tenant in its database, would otherwise take over the
killed process's claims itself (and send its SMS retries to the real provider), and the restart would go untested.
"""

import asyncio
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer

from scrm_contracts import TouchRequest, record_key
from scrm_stack.launcher import Stack, free_port
from tests.fakes.notify_providers import FakeProviders, running
from tests.integration.kafka_tap import create_topic
from tests.integration.notify_harness import NotifyHarness, harness

CUSTOMERS = 40
PER_CUSTOMER = 5


@pytest.fixture
async def fake() -> AsyncIterator[FakeProviders]:
    async with running(FakeProviders()) as providers:
        providers.webhook_delay = 0.02
        yield providers


def start_notify(stack: Stack, db_url: str, topic: str, group: str, fake_url: str) -> subprocess.Popen[bytes]:
    env = stack.service_env() | {
        "SCRM_ENV": "test",
        "SCRM_DB__URL": db_url,
        "SCRM_ROLES": "consumer,scheduler",
        "SCRM_REQUESTS_TOPIC": topic,
        "SCRM_CONSUMER_GROUP": group,
        "SCRM_DIRECTORY_GROUP": f"{group}-directory",
        "SCRM_WECOM__WELCOME_GROUP": f"{group}-welcome",
        "SCRM_DELIVERY__SEND_LEASE_SECONDS": "10",
        "SCRM_DELIVERY__HTTP_TIMEOUT_SECONDS": "5",
        "SCRM_PROVIDERS__ALIYUN_SMS": f"{fake_url}/aliyun/",
    }
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        "--factory",
        "scrm_notify.entrypoints.api:app",
        "--host",
        "127.0.0.1",
        "--port",
        str(free_port()),
    ]
    log = open(stack.log_dir / f"notify-kill-{group}.log", "ab")  # noqa: SIM115 - closed with the process
    return subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)


def log_tail(stack: Stack, group: str, lines: int = 40) -> str:
    """The end of the notify processes' log (the stack's log folder goes when the session ends)."""
    path = stack.log_dir / f"notify-kill-{group}.log"
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else "(no log)"


async def produce(stack: Stack, topic: str, requests: list[TouchRequest]) -> None:
    await create_topic(stack.kafka.bootstrap, topic)
    producer = AIOKafkaProducer(bootstrap_servers=stack.kafka.bootstrap)
    await producer.start()
    try:
        for request in requests:
            await producer.send(topic, value=request.to_wire(), key=record_key(request.tenant_id, request.customer_id))
        await producer.flush()
    finally:
        await producer.stop()


async def statuses(h: NotifyHarness) -> dict[str, str]:
    rows = await h.sql("SELECT touch_key, status FROM notify.touches WHERE tenant_id = :t", t=h.tenant_id)
    return {k: s for k, s in rows}


async def stop(process: subprocess.Popen[bytes], sig: int) -> None:
    """Signal the process and wait for it off the event loop: the fake providers answer on this loop, and the
    process may be waiting on them to finish its sends before it exits."""
    process.send_signal(sig)
    await asyncio.to_thread(process.wait, 30)


async def test_killing_notify_mid_batch_never_sends_a_message_twice(
    stack: Stack, own_db_url: str, fake: FakeProviders
) -> None:
    url = fake.url
    async for h in harness(own_db_url, url):
        await h.configure("webhook")
        await h.configure("sms", provider="aliyun", access_key_id="LTAI-test", sign_name="Shop", template_code="S1")
        requests = []
        for n in range(CUSTOMERS):
            channel = "webhook" if n % 2 else "sms"
            await h.customer(f"cus_k{n}", phone="13800138000")
            for _ in range(PER_CUSTOMER):
                request = h.request(f"cus_k{n}", channel, priority="transactional")
                requests.append(request.model_copy(update={"requested_at": datetime.now(UTC)}))
        topic, group = f"kill-{uuid.uuid4().hex[:8]}", f"notify-kill-{uuid.uuid4().hex[:8]}"
        await produce(stack, topic, requests)
        first = start_notify(stack, own_db_url, topic, group, url)
        try:
            while len(fake.seen) < len(requests) // 4:
                assert first.poll() is None, "notify exited early"
                await asyncio.sleep(0.02)
        finally:
            await stop(first, signal.SIGKILL)
        sent_before_restart = len(fake.seen)
        assert sent_before_restart < len(requests), "killed mid-batch"
        second = start_notify(stack, own_db_url, topic, group, url)
        try:
            deadline = time.monotonic() + 120
            while True:
                assert second.poll() is None, (
                    f"the restarted notify exited ({second.returncode}): {log_tail(stack, group)}"
                )
                # One read for both conditions: between two reads the consumer may record (and claim) the last
                # requests, and "all ended" from before that with "all recorded" from after is not "all done".
                current = await statuses(h)
                if len(current) == len(requests) and all(s in ("sent", "failed") for s in current.values()):
                    break
                assert time.monotonic() < deadline, (
                    f"after 120 s, {len(requests) - len(current)} touches not recorded and these not ended: "
                    f"{Counter(s for s in current.values() if s not in ('sent', 'failed'))}; "
                    f"the restarted notify's log ends: {log_tail(stack, group)}"
                )
                await asyncio.sleep(0.1)
        finally:
            await stop(second, signal.SIGTERM)
        final = await statuses(h)
        assert len(final) == len(requests)
        sms_out_ids = [s.body["OutId"] for s in fake.of("sms_aliyun")]
        assert len(sms_out_ids) == len(set(sms_out_ids)), "no SMS sent twice"
        webhook = [r.touch_key for r in requests if r.channels == ["webhook"]]
        missed = [k for k in webhook if fake.webhook_accepted[k] != 1]
        if missed:  # say how each ended, for the log
            rows = await h.sql(
                "SELECT touch_key, status, reason_code, reason, attempts FROM notify.touches "
                "WHERE tenant_id = :t AND touch_key = ANY(:k)",
                t=h.tenant_id,
                k=missed,
            )
            sent = sum(1 for s in fake.seen if s.provider == "webhook" and s.headers.get("x-scrm-touch-key") in missed)
            raise AssertionError(
                f"webhook messages not accepted exactly once: {list(rows)}; requests seen: {sent}; "
                f"the restarted notify's log ends: {log_tail(stack, group)}"
            )
        # A send in flight at the kill may be repeated with the same key (the receiver drops it) or, for SMS,
        # failed as outcome_unknown rather than sent again: the residual window, at most one batch in flight.
        unknown = [k for k, s in final.items() if s == "failed"]
        assert fake.webhook_duplicates + len(unknown) <= 32
        print(
            f"kill test: {sent_before_restart} sent before SIGKILL, {fake.webhook_duplicates} webhook re-posts "
            f"deduped by key, {len(unknown)} SMS failed as outcome_unknown"
        )
