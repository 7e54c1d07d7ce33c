"""Notify throughput: touches per second through the gates, template rendering, HMAC signing and the webhook
adapter (httpx, the production code path) against a local receiver in its own process.

The database is left out on purpose: this measures the per-touch CPU cost of notify's own code and the HTTP hop.
Prints a table and writes JSON to bench/results/notify_throughput.json. Usage: python bench/notify_throughput.py
"""

import asyncio
import json
import multiprocessing
import os
import platform
import socket
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx

from scrm_kit.clock import FixedClock
from scrm_notify.adapters.channels.base import Credentials, OutboundMessage
from scrm_notify.adapters.channels.webhook import WebhookAdapter
from scrm_notify.domain.consent import CustomerView
from scrm_notify.domain.gates import GateRequest, History, decide
from scrm_notify.domain.policy import TenantPolicy
from scrm_notify.domain.templates import TemplateSource, render_source

TOUCHES = int(os.environ.get("BENCH_TOUCHES", "20000"))
RUNS = int(os.environ.get("BENCH_RUNS", "5"))
CONCURRENCY = int(os.environ.get("BENCH_CONCURRENCY", "4"))
NOW = datetime(2031, 3, 4, 4, 0, tzinfo=UTC)
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nX-Message-Id: m\r\n\r\n"


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


def _customers(n: int) -> list[CustomerView]:
    return [
        CustomerView(
            customer_id=f"cus_{i}",
            version=1,
            snapshot_at=NOW - timedelta(days=1),
            timezone="Asia/Shanghai",
            lifecycle_stage="active",
            wecom_staff_ids=("s1",),
        )
        for i in range(n)
    ]


async def _run(url: str, customers: list[CustomerView]) -> tuple[float, float, int]:
    policy = TenantPolicy()
    template = TemplateSource("Hi {{ customer_id }}, thanks for your order {{ order_id }}!")
    history = History(sent=[("webhook", NOW - timedelta(hours=30), "marketing")])
    creds = Credentials(secret="bench-secret-0123456789", url=url)
    queue: asyncio.Queue[CustomerView] = asyncio.Queue()
    for customer in customers:
        queue.put_nowait(customer)
    sent = 0
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(limits=limits, timeout=10) as client:
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
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        return time.perf_counter() - started, time.process_time() - cpu, sent


def main() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    receiver = multiprocessing.Process(target=_serve, args=(port,), daemon=True)
    receiver.start()
    time.sleep(0.5)
    url = f"http://127.0.0.1:{port}/hook"
    customers = _customers(TOUCHES)
    try:
        asyncio.run(_run(url, customers[:500]))  # warm up
        runs, per_cpu = [], []
        for _ in range(RUNS):
            seconds, cpu_seconds, sent = asyncio.run(_run(url, customers))
            assert sent == TOUCHES, f"only {sent} of {TOUCHES} accepted"
            runs.append(TOUCHES / seconds)
            per_cpu.append(TOUCHES / cpu_seconds)
    finally:
        receiver.terminate()
    median = statistics.median(runs)
    median_cpu = statistics.median(per_cpu)
    print(f"{'metric':<40}{'value':>14}")
    print(f"{'touches per run':<40}{TOUCHES:>14,}")
    for i, rate in enumerate(runs, 1):
        print(f"{'run ' + str(i) + ' touches/s':<40}{rate:>14,.0f}")
    print(f"{'median touches/s (wall)':<40}{median:>14,.0f}")
    print(f"{'median touches per notify CPU-second':<40}{median_cpu:>14,.0f}")
    print(f"{'load average (1 min)':<40}{os.getloadavg()[0]:>14.1f}")
    print(f"{'target touches/s':<40}{2000:>14,}")
    result = {
        "benchmark": "notify_throughput",
        "what": "gates + template render + HMAC + webhook POST (httpx) to a local receiver process; no database",
        "touches_per_run": TOUCHES,
        "runs_touches_per_second": [round(r) for r in runs],
        "median_touches_per_second": round(median),
        "runs_touches_per_cpu_second": [round(r) for r in per_cpu],
        "median_touches_per_cpu_second": round(median_cpu),
        "target_touches_per_second": 2000,
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": sys.version.split()[0],
        "machine": platform.machine(),
        "at": datetime.now(UTC).isoformat(),
    }
    out = Path(__file__).parent / "results" / "notify_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
