"""Benchmark: the ingest tracking API into Apache Kafka, beside the raw aiokafka producer rate of the same run.

Starts its own PostgreSQL and Kafka (free ports, a temporary state folder) and two ingest processes, then measures:
  raw      aiokafka send() of N records of the same size and key spread, acks=all, idempotent: the ceiling
  batch    POST /v1/batch, 100 events per request, C concurrent clients, one ingest process: events acknowledged
           per second
  batch x2 the same, the clients spread over two ingest processes (two replicas, as a Kubernetes Service spreads
           them), on the same two cores
  track    POST /v1/track at a fixed arrival rate (open loop): p50/p99 latency and the rate achieved
  import   `scrm import orders` of a CSV file: orders per second
After a short warm-up, each phase runs R times; the table shows medians. The load generator runs on the same 2
cores as the server and the broker, so the figures are a floor, not a ceiling.
Writes bench/results/ingest_throughput.json.

Run from the workspace root:  .venv/bin/python bench/ingest_throughput.py [--events N] [--repeats R]
"""

import argparse
import asyncio
import base64
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from _loadgen import closed_loop, open_loop, request_bytes

from scrm_kit.kafka import build_producer
from scrm_kit.settings import KafkaSettings
from scrm_stack.launcher import Stack, StackConfig

RESULTS = Path(__file__).resolve().parent / "results" / "ingest_throughput.json"


def order(i: int, run: str) -> dict[str, Any]:
    return {
        "type": "track",
        "userId": f"bench-{i % 20_000}",
        "messageId": f"{run}-{i}",
        "event": "Order Completed",
        "timestamp": "2026-11-20T08:30:00Z",
        "properties": {"order_id": f"{run}-o{i}", "total": 99.5, "currency": "CNY", "products": [{"sku": "tea-1"}]},
        "context": {"library": {"name": "bench"}, "ip": "10.1.2.3"},
    }


async def raw_producer(bootstrap: str, events: int) -> float:
    producer = build_producer(KafkaSettings(bootstrap_servers=bootstrap), "-bench")
    await producer.start()
    run = uuid.uuid4().hex[:8]
    payloads = [(f"t:bench-{i % 20_000}".encode(), orjson.dumps(order(i, run))) for i in range(events)]
    started = time.perf_counter()
    futures = [await producer.send("events.v1", value=v, key=k) for k, v in payloads]
    await asyncio.gather(*futures)
    elapsed = time.perf_counter() - started
    await producer.stop()
    return events / elapsed


async def batch_api(urls: list[str], write_key: str, events: int, concurrency: int) -> float:
    """Events per second through ``/v1/batch`` (100 per request) from ``concurrency`` clients over ``urls``."""
    run = uuid.uuid4().hex[:8]
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}
    requests = [
        request_bytes(
            "POST", urls[0], "/v1/batch", headers, orjson.dumps({"batch": [order(i, run) for i in range(n, n + 100)]})
        )
        for n in range(0, events, 100)
    ]
    result = await closed_loop(urls, requests, concurrency)
    assert result.statuses == {200: len(requests)} and not result.errors, result.summary()
    return len(requests) * 100 / result.seconds


async def track_latency(url: str, write_key: str, rate: float, seconds: float) -> dict[str, Any]:
    run = uuid.uuid4().hex[:8]
    basic = base64.b64encode(f"{write_key}:".encode()).decode()
    headers = {"Authorization": f"Basic {basic}", "Content-Type": "application/json"}
    bodies = [orjson.dumps(order(i, run)) for i in range(int(rate * seconds))]
    requests = [request_bytes("POST", url, "/v1/track", headers, body) for body in bodies]
    return (await open_loop(url, requests, rate)).summary()


def import_rate(stack: Stack, tenant_id: str, rows: int, folder: Path) -> float:
    path = folder / "orders.csv"
    run = uuid.uuid4().hex[:8]
    with path.open("w") as out:
        out.write("customer_id,order_id,occurred_at,total,currency\n")
        for i in range(rows):
            out.write(f"bench-{i % 50_000},{run}-{i},2025-03-0{1 + i % 9}T10:00:00Z,{10 + i % 500}.50,CNY\n")
    done = subprocess.run(
        [sys.executable, "-m", "scrm_cli.main", "import", "orders", str(path), "--tenant-id", tenant_id, "--json"],
        env=stack.service_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    report = json.loads(done.stdout)
    assert report["accepted"] == rows, report
    return rows / report["seconds"]


def start(state: Path) -> tuple[Stack, dict[str, str], str]:
    config = StackConfig.on_free_ports(state, services=("ingest", "ingest.2"))
    stack = Stack(config, log=lambda line: print(line, file=sys.stderr))
    stack.start_infrastructure()
    tenant = stack.create_tenant("bench")
    subprocess.run(
        [sys.executable, "-m", "scrm_cli.main", "tenant", "rate-limit", "--tenant-id", tenant["tenant_id"]]
        + ["--events-per-second", "1000000"],
        env=stack.service_env(),
        check=True,
        capture_output=True,
    )
    for name in ("ingest", "ingest.2"):
        stack.start_service(name, stack.service_env() | {"SCRM_ROLES": "api", "SCRM_LOG_LEVEL": "WARNING"})
    stack.wait_ready(("ingest", "ingest.2"))
    return stack, tenant, stack.url("ingest")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--track-rate", type=float, default=1000)
    parser.add_argument("--track-seconds", type=float, default=10)
    args = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    stack, tenant, url = start(state)
    runs: dict[str, list[Any]] = {"raw": [], "batch": [], "batch_x2": [], "track": [], "import": []}
    replicas = [url, stack.url("ingest.2")]
    try:
        # Warm-up, not measured: connections, the tenant and key caches, the broker's first segments.
        asyncio.run(raw_producer(stack.kafka.bootstrap, 20_000))
        asyncio.run(batch_api(replicas, tenant["write_key"], 20_000, args.concurrency))
        for _ in range(args.repeats):
            runs["raw"].append(asyncio.run(raw_producer(stack.kafka.bootstrap, args.events)))
            runs["batch"].append(asyncio.run(batch_api([url], tenant["write_key"], args.events, args.concurrency)))
            runs["batch_x2"].append(
                asyncio.run(batch_api(replicas, tenant["write_key"], args.events, args.concurrency))
            )
            runs["import"].append(import_rate(stack, tenant["tenant_id"], args.events, state))
            runs["track"].append(
                asyncio.run(track_latency(url, tenant["write_key"], args.track_rate, args.track_seconds))
            )
            print({k: v[-1] for k, v in runs.items()}, file=sys.stderr)
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
    report(args, runs)


def report(args: argparse.Namespace, runs: dict[str, list[Any]]) -> None:
    raw, batch, batch_x2, imported = (statistics.median(runs[k]) for k in ("raw", "batch", "batch_x2", "import"))
    p50 = statistics.median(r["p50_ms"] for r in runs["track"])
    p99 = statistics.median(r["p99_ms"] for r in runs["track"])
    achieved = statistics.median(r["achieved_rps"] for r in runs["track"])
    failed = sum(r["failed"] for r in runs["track"])
    rows = [
        ("raw aiokafka producer", f"{raw:,.0f} events/s", "ceiling"),
        (
            "/v1/batch (100 per request)",
            f"{batch:,.0f} events/s",
            f"ratio {batch / raw:.2f} (target >= 0.5; >= 30,000/s)",
        ),
        ("/v1/batch, two ingest processes", f"{batch_x2:,.0f} events/s", f"ratio {batch_x2 / raw:.2f}"),
        (
            f"/v1/track at {args.track_rate:,.0f}/s",
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms",
            f"achieved {achieved:,.0f}/s, {failed} failed in all runs (p99 < 20 ms)",
        ),
        ("scrm import orders", f"{imported:,.0f} orders/s", "target >= 20,000/s"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"\n{'phase':<{width}}  {'median of ' + str(args.repeats):<28}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<28}  {note}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
                "server": "one ingest process (batch), two (batch_x2); broker and load generator on the same cores",
                "events": args.events,
                "repeats": args.repeats,
                "raw_events_per_s": raw,
                "batch_events_per_s": batch,
                "batch_to_raw_ratio": batch / raw,
                "batch_x2_events_per_s": batch_x2,
                "batch_x2_to_raw_ratio": batch_x2 / raw,
                "track": {
                    "rate": args.track_rate,
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "achieved_rps": achieved,
                    "failed": failed,
                },
                "import_orders_per_s": imported,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
