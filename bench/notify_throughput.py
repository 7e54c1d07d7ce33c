"""Notify throughput, two rows, each repeated and reported as the median with the machine's load:

1. adapter path (no database): the gates, template rendering, HMAC signing and the webhook adapter (the service's
   HTTP client as bootstrap builds it) against a local receiver in its own process, ``--concurrency`` sends at
   once: the per-touch CPU cost of notify's own code and the HTTP hop.
2. full delivery path: the production ``NotifyConsumer`` and ``Pipeline`` (built by ``bootstrap``) on a real
   PostgreSQL started here through the project's launcher: parse the records, record and gate each touch (caps,
   consent, quiet hours) and claim it in the database, render, sign and POST it to the same receiver, settle the
   outcome and enqueue the result in the outbox. Batches of ``--batch`` records, as the consumer runner hands
   them over; every touch is checked ``sent`` afterwards.

Prints a table and writes bench/results/notify_throughput.json. Usage: python bench/notify_throughput.py
[--touches N] [--repeats N] [--no-db]. Target: 2,000 touches/s on the 2-core build machine.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from aiokafka.structs import ConsumerRecord
from rich.console import Console
from rich.table import Table
from sqlalchemy import text

from scrm_contracts import TouchRequest
from scrm_kit.clock import FixedClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.settings import DbSettings
from scrm_notify.adapters.channels.base import Credentials, OutboundMessage
from scrm_notify.adapters.channels.webhook import WebhookAdapter
from scrm_notify.bootstrap import build_pipeline
from scrm_notify.domain.consent import CustomerView
from scrm_notify.domain.gates import GateRequest, History, decide
from scrm_notify.domain.policy import TenantPolicy
from scrm_notify.domain.templates import TemplateSource, render_source
from scrm_notify.service import channels
from scrm_notify.service.consume import NotifyConsumer
from scrm_notify.settings import Settings
from scrm_stack.launcher import REPO_ROOT, Stack, StackConfig, free_port

RESULTS = Path(__file__).resolve().parent / "results" / "notify_throughput.json"
NOW = datetime(2031, 3, 4, 4, 0, tzinfo=UTC)  # 12:00 in Shanghai: no quiet hours
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Message-Id: m\r\n\r\n"
TEMPLATE = "Hi {{ customer_id }}, thanks for your order {{ order_id }}!"
SECRET = "bench-secret-0123456789"
TARGET = 2000


class _Receiver(asyncio.Protocol):
    """A minimal keep-alive HTTP/1.1 receiver: answers 200 to every complete request."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].lower()
            length = 0
            for line in head.split(b"\r\n"):
                if line.startswith(b"content-length:"):
                    length = int(line.split(b":", 1)[1])
            total = head_end + 4 + length
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self.transport.write(RESPONSE)  # type: ignore[attr-defined]


def _serve(port: int) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Receiver, "127.0.0.1", port)
        await server.serve_forever()

    asyncio.run(main())


def load() -> dict[str, Any]:
    uptime = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    return {"uptime": uptime, "loadavg": [round(x, 2) for x in os.getloadavg()]}


# --- 1. adapter path, no database ---------------------------------------------------------------------------


async def adapter_run(url: str, touches: int, concurrency: int) -> tuple[float, float, int]:
    customers = [
        CustomerView(
            customer_id=f"cus_{i}",
            version=1,
            snapshot_at=NOW - timedelta(days=1),
            timezone="Asia/Shanghai",
            lifecycle_stage="active",
        )
        for i in range(touches)
    ]
    policy = TenantPolicy()
    template = TemplateSource(TEMPLATE)
    history = History(sent=[("webhook", NOW - timedelta(hours=30), "marketing")])
    creds = Credentials(secret=SECRET, url=url)
    queue: asyncio.Queue[CustomerView] = asyncio.Queue()
    for customer in customers:
        queue.put_nowait(customer)
    sent = 0
    async with _service_client(Settings()) as client:
        adapter = WebhookAdapter(client, FixedClock(NOW))

        async def worker() -> None:
            nonlocal sent
            while not queue.empty():
                customer = queue.get_nowait()
                request = GateRequest(channels=("webhook",), priority="marketing", requested_at=NOW)
                decision = decide(request, customer, False, {}, history, policy, NOW)
                assert decision.verdict == "send", decision
                message = render_source("t", template, {"customer_id": customer.customer_id, "order_id": "o-1"})
                outbound = OutboundMessage(
                    "ten_bench",
                    f"tk-{customer.customer_id}",
                    "webhook",
                    decision.address or "",
                    message,
                    creds,
                    customer_id=customer.customer_id,
                )
                outcome = await adapter.send(outbound)
                sent += outcome.kind == "ok"

        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return time.perf_counter() - started, time.process_time() - cpu, sent


def adapter_row(url: str, args: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(adapter_run(url, 500, args.concurrency))  # warm up
    before = load()
    walls, cpus = [], []
    for _ in range(args.repeats):
        seconds, cpu_seconds, sent = asyncio.run(adapter_run(url, args.touches, args.concurrency))
        assert sent == args.touches, f"only {sent} of {args.touches} accepted"
        walls.append(args.touches / seconds)
        cpus.append(args.touches / cpu_seconds)
    return _row("adapter path, no database", walls, cpus, before, args.touches, concurrency=args.concurrency)


# --- 2. full delivery path on PostgreSQL --------------------------------------------------------------------


async def seed(sessions: Any, tenant: str, customers: int, url: str) -> None:
    await channels.configure_webhook(sessions, tenant, url, SECRET)
    async with sessions() as session, session.begin():
        await session.execute(
            text(
                "INSERT INTO notify.customers (tenant_id, customer_id, version, snapshot_at, lifecycle_stage, "
                "timezone, official_account_follower, sms_consent, email_consent, variables) "
                "SELECT :t, 'cus_' || g, 1, :at, 'active', 'Asia/Shanghai', false, 'unknown', 'unknown', "
                "jsonb_build_object('lifecycle_stage', 'active', 'traits', jsonb_build_object('name', 'n' || g)) "
                "FROM generate_series(0, :n - 1) g"
            ),
            {"t": tenant, "at": NOW - timedelta(days=1), "n": customers},
        )
        await session.execute(
            text(
                "INSERT INTO notify.templates (tenant_id, template_id, channel, locale, body, params) "
                "VALUES (:t, 'order_thanks', '*', 'default', :body, '{}'::jsonb)"
            ),
            {"t": tenant, "body": TEMPLATE},
        )


def requests_for(tenant: str, touches: int, customers: int) -> list[ConsumerRecord[bytes, bytes]]:
    """Two touches per customer (both pass the default cap of two a day), interleaved as a topic would be."""
    records = []
    for n in range(touches):
        customer = f"cus_{n % customers}"
        request = TouchRequest(
            event_id=f"bench-{tenant}-{n}",
            touch_key=f"bench-{tenant}-{n}",
            tenant_id=tenant,
            customer_id=customer,
            journey_id="bench",
            channels=["webhook"],
            template_id="order_thanks",
            priority="marketing",
            variables={"order_id": f"o-{n}"},
            requested_at=NOW,
        )
        value = request.to_wire()
        records.append(
            ConsumerRecord("touches.requests.v1", 0, n, 0, 0, customer.encode(), value, None, 1, len(value), [])
        )
    return records


async def full_run(db_url: str, url: str, touches: int, batch: int) -> tuple[float, float, int]:
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    sessions = build_sessionmaker(engine)
    settings = Settings()
    tenant = f"ten_bench_{uuid.uuid4().hex[:8]}"
    await seed(sessions, tenant, max(1, touches // 2), url)
    records = requests_for(tenant, touches, max(1, touches // 2))
    async with _service_client(settings) as client:
        consumer = NotifyConsumer(build_pipeline(sessions, client, FixedClock(NOW), settings))
        started, cpu = time.perf_counter(), time.process_time()
        for start in range(0, len(records), batch):
            await consumer(records[start : start + batch])
        wall, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    async with sessions() as session:
        sent = (
            await session.execute(
                text("SELECT count(*) FROM notify.touches WHERE tenant_id = :t AND status = 'sent'"), {"t": tenant}
            )
        ).scalar_one()
    await engine.dispose()
    return wall, cpu_seconds, int(sent)


def _service_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client as bootstrap builds it for the running service."""
    try:
        from scrm_notify.adapters.channels.http import build_client
    except ImportError:  # the code before the sharded pools (to measure a "before")
        limits = httpx.Limits(max_connections=settings.delivery.concurrency * 2)
        return httpx.AsyncClient(timeout=settings.delivery.http_timeout_seconds, limits=limits)
    return build_client(settings.delivery.concurrency, settings.delivery.http_timeout_seconds)


def full_row(db_url: str, url: str, args: argparse.Namespace) -> dict[str, Any]:
    asyncio.run(full_run(db_url, url, 400, args.batch))  # warm up
    before = load()
    walls, cpus = [], []
    for _ in range(args.repeats):
        seconds, cpu_seconds, sent = asyncio.run(full_run(db_url, url, args.db_touches, args.batch))
        assert sent == args.db_touches, f"only {sent} of {args.db_touches} sent"
        walls.append(args.db_touches / seconds)
        cpus.append(args.db_touches / cpu_seconds)
    return _row("full delivery path, PostgreSQL", walls, cpus, before, args.db_touches, batch=args.batch)


def _row(
    name: str, walls: list[float], cpus: list[float], before: dict[str, Any], touches: int, **params: Any
) -> dict[str, Any]:
    return {
        "name": name,
        "touches_per_run": touches,
        **params,
        "runs_touches_per_second": [round(r) for r in walls],
        "median_touches_per_second": round(statistics.median(walls)),
        "runs_touches_per_cpu_second": [round(r) for r in cpus],
        "median_touches_per_cpu_second": round(statistics.median(cpus)),
        "load_before": before,
        "load_after": load(),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    table = Table(title=f"notify throughput (median of runs; target {TARGET:,} touches/s)")
    for column in (
        "path",
        "touches/run",
        "runs (touches/s)",
        "median touches/s",
        "touches per notify CPU-s",
        "load 1m before/after",
    ):
        table.add_column(column, justify="left" if column == "path" else "right")
    for row in rows:
        table.add_row(
            row["name"],
            f"{row['touches_per_run']:,}",
            ", ".join(f"{r:,}" for r in row["runs_touches_per_second"]),
            f"{row['median_touches_per_second']:,}",
            f"{row['median_touches_per_cpu_second']:,}",
            f"{row['load_before']['loadavg'][0]:.1f} / {row['load_after']['loadavg'][0]:.1f}",
        )
    Console(width=150).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--touches", type=int, default=int(os.environ.get("BENCH_TOUCHES", "20000")))
    parser.add_argument("--db-touches", type=int, default=int(os.environ.get("BENCH_DB_TOUCHES", "10000")))
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_RUNS", "3")))
    parser.add_argument("--concurrency", type=int, default=int(os.environ.get("BENCH_CONCURRENCY", "4")))
    parser.add_argument("--batch", type=int, default=200, help="records per consumer batch (the runner's max_records)")
    parser.add_argument("--no-db", action="store_true", help="only the adapter path")
    args = parser.parse_args()
    port = free_port()
    receiver = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    receiver.start()
    time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/hook"
    rows = []
    postgres_started = False
    stack: Stack | None = None
    state = Path(
        tempfile.mkdtemp(prefix="bench-notify-", dir=REPO_ROOT / ".local" if (REPO_ROOT / ".local").exists() else None)
    )
    try:
        rows.append(adapter_row(url, args))
        if not args.no_db:
            config = StackConfig.on_free_ports(state, services=())
            stack = Stack(config, log=lambda line: print(line, file=sys.stderr))
            postgres_started = stack.postgres.start()
            stack.migrate()
            rows.append(full_row(stack.postgres.url, url, args))
    finally:
        receiver.terminate()
        if stack is not None and postgres_started:
            stack.postgres.stop()
        shutil.rmtree(state, ignore_errors=True)
    result = {
        "benchmark": "notify_throughput",
        "rows": rows,
        "target_touches_per_second": TARGET,
        "cpu_count": os.cpu_count(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "at": datetime.now(UTC).isoformat(),
    }
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2))
    print_table(rows)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
