"""Benchmark: the profile read API over 1,000,000 stored customers.

Starts its own PostgreSQL and Kafka (free ports, a temporary state folder), stores N customers of one tenant with
a user_id identity each, recent touches for a fifth of them and segment memberships, then starts one profile
process serving only its API (``SCRM_ROLES=api``) and measures:
  get by id     GET /v1/customers/cus_... at a fixed arrival rate (open loop): p50 / p99 and the rate achieved
  get by ref    the same by ``user_id:...`` (one more lookup: the identity)
  audience      POST /v1/audiences/count of a 3-condition rule (stage, orders, revenue): seconds per count
Each phase runs R times; the table shows medians. The load generator runs on the same 2 cores as the server and
Postgres, so the figures are a floor. Writes bench/results/profile_api.json.

Run from the workspace root:  .venv/bin/python bench/profile_api.py [--customers N] [--rate R] [--repeats R]
"""

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from _loadgen import open_loop, request_bytes

from scrm_stack.launcher import REPO_ROOT, Stack, StackConfig

RESULTS = Path(__file__).resolve().parent / "results" / "profile_api.json"
AUDIENCE_RULE = {
    "all": [
        {"field": "lifecycle_stage", "op": "in", "value": ["active", "silent"]},
        {"field": "orders_count", "op": "gte", "value": 3},
        {"field": "revenue_total", "op": "gt", "value": 500},
    ]
}


async def store_customers(dsn: str, tenant: str, customers: int) -> float:
    """Customers with spread-out values, one user_id identity each, touches and segment rows for some."""
    started = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            """
            INSERT INTO profile.customers (tenant_id, customer_id, user_id, lifecycle_stage, orders_count,
                revenue_total, first_order_at, last_order_at, avg_interval_days, city, traits, tags,
                wecom_staff_ids, official_account_follower, sms_consent, email_consent, stored_value_balance,
                rfm_r, rfm_f, rfm_m, rfm_segment, expected_purchases, probability_alive, clv, tier, version)
            SELECT $1, 'cus_b' || i, 'u' || i,
                   (ARRAY['new','active','silent','sleeping','churned'])[1 + i % 5], 1 + i % 9,
                   (i % 2000) + 0.5, now() - interval '400 days' + (i % 300) * interval '1 day',
                   now() - (i % 200) * interval '1 day', 20 + i % 40, (ARRAY['杭州','上海','北京'])[1 + i % 3],
                   jsonb_build_object('city', (ARRAY['杭州','上海','北京'])[1 + i % 3], 'plan', 'basic'),
                   CASE WHEN i % 7 = 0 THEN ARRAY['vip'] ELSE ARRAY[]::text[] END,
                   ARRAY['staff-' || (i % 50)], i % 2 = 0, 'granted', 'unknown', 0,
                   1 + i % 5, 1 + (i / 5) % 5, 1 + (i / 25) % 5, 'loyal', 1.5, 0.8, (i % 3000) + 0.25,
                   CASE WHEN i % 5 = 0 THEN 'high_value' END, 1
            FROM generate_series(1, $2::int) AS i
            """,
            tenant,
            customers,
        )
        await conn.execute(
            """INSERT INTO profile.identities (tenant_id, kind, value, customer_id)
               SELECT $1, 'user_id', 'u' || i, 'cus_b' || i FROM generate_series(1, $2::int) AS i""",
            tenant,
            customers,
        )
        await conn.execute(
            """INSERT INTO profile.touches (tenant_id, event_id, touch_key, customer_id, journey_id, channel,
                   template_id, status, reason, occurred_at)
               SELECT $1, 'tr-' || i || '-' || k, 'tk-' || i || '-' || k, 'cus_b' || i, 'welcome', 'webhook',
                      'welcome', 'delivered', NULL, now() - k * interval '1 day'
               FROM generate_series(1, $2::int, 5) AS i, generate_series(1, 3) AS k""",
            tenant,
            customers,
        )
        await conn.execute("VACUUM ANALYZE profile.customers")
        await conn.execute("VACUUM ANALYZE profile.identities")
        await conn.execute("VACUUM ANALYZE profile.touches")
        await conn.execute("CHECKPOINT")  # the bulk load's dirty pages are written now, not while we measure
    finally:
        await conn.close()
    return time.perf_counter() - started


async def get_latency(url: str, token: str, refs: list[str], rate: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}"}
    requests = [request_bytes("GET", url, f"/v1/customers/{ref}", headers) for ref in refs]
    return (await open_loop(url, requests, rate)).summary()


async def audience_seconds(url: str, token: str) -> tuple[float, int]:
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as client:
        started = time.perf_counter()
        answer = await client.post("/v1/audiences/count", json={"rule": AUDIENCE_RULE})
        elapsed = time.perf_counter() - started
        answer.raise_for_status()
        return elapsed, int(answer.json()["count"])


def start(state: Path, customers: int) -> tuple[Stack, dict[str, str], float]:
    config = StackConfig.on_free_ports(state, services=("profile",))
    stack = Stack(config, log=lambda line: print(line, file=sys.stderr))
    stack.start_infrastructure()
    tenant = stack.create_tenant("bench")
    dsn = stack.postgres.url.replace("postgresql+asyncpg://", "postgresql://")
    seeded = asyncio.run(store_customers(dsn, tenant["tenant_id"], customers))
    stack.start_service("profile", stack.service_env() | {"SCRM_ROLES": "api", "SCRM_LOG_LEVEL": "WARNING"})
    stack.wait_ready(("profile",))
    return stack, tenant, seeded


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--rate", type=float, default=500)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup-seconds", type=float, default=30)
    args = parser.parse_args()
    state = Path(
        tempfile.mkdtemp(prefix="bench-profile-", dir=REPO_ROOT / ".local" if (REPO_ROOT / ".local").exists() else None)
    )
    stack, tenant, seeded = start(state, args.customers)
    url, token = stack.url("profile"), tenant["api_token"]
    rng = random.Random(7)
    runs: dict[str, list[Any]] = {"by_id": [], "by_ref": [], "audience": [], "warmup": []}
    try:
        # Warm-up, reported but not in the medians: a fresh bulk load leaves Postgres with cold caches and pending
        # writes that stall the first seconds of reads; the target is about a server in its steady state.
        warm = [rng.randint(1, args.customers) for _ in range(int(args.rate * args.warmup_seconds))]
        runs["warmup"].append(asyncio.run(get_latency(url, token, [f"user_id:u{i}" for i in warm], args.rate)))
        for _ in range(args.repeats):
            picks = [rng.randint(1, args.customers) for _ in range(int(args.rate * args.seconds))]
            runs["by_id"].append(asyncio.run(get_latency(url, token, [f"cus_b{i}" for i in picks], args.rate)))
            runs["by_ref"].append(asyncio.run(get_latency(url, token, [f"user_id:u{i}" for i in picks], args.rate)))
            runs["audience"].append(asyncio.run(audience_seconds(url, token)))
            print({k: v[-1] for k, v in runs.items()}, file=sys.stderr)
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
    report(args, runs, seeded)


def report(args: argparse.Namespace, runs: dict[str, list[Any]], seeded: float) -> None:
    def med(phase: str, key: str) -> float:
        return statistics.median(r[key] for r in runs[phase])

    audience = statistics.median(seconds for seconds, _ in runs["audience"])
    failed = sum(r["failed"] for phase in ("by_id", "by_ref") for r in runs[phase])
    rows = [
        (
            f"GET /v1/customers/cus_... at {args.rate:,.0f}/s",
            f"p50 {med('by_id', 'p50_ms'):.1f} ms, p99 {med('by_id', 'p99_ms'):.1f} ms",
            f"achieved {med('by_id', 'achieved_rps'):,.0f}/s (p99 < 15 ms)",
        ),
        (
            f"GET /v1/customers/user_id:... at {args.rate:,.0f}/s",
            f"p50 {med('by_ref', 'p50_ms'):.1f} ms, p99 {med('by_ref', 'p99_ms'):.1f} ms",
            f"achieved {med('by_ref', 'achieved_rps'):,.0f}/s",
        ),
        (
            "audience count, 3 conditions",
            f"{audience * 1000:,.0f} ms",
            f"{runs['audience'][0][1]:,} of {args.customers:,} match (< 1 s)",
        ),
    ]
    width = max(len(r[0]) for r in rows)
    warm = runs["warmup"][0]
    print(f"\n{args.customers:,} customers stored in {seeded:.0f} s; {failed} failed requests in all runs")
    print(
        f"warm-up ({args.warmup_seconds:.0f} s, not in the medians): "
        f"p50 {warm['p50_ms']:.1f} ms, p99 {warm['p99_ms']:.1f} ms"
    )
    print(f"{'phase':<{width}}  {'median of ' + str(args.repeats):<30}  note")
    for name, value, note in rows:
        print(f"{name:<{width}}  {value:<30}  {note}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load": os.getloadavg()},
                "server": "one profile process (uvicorn, API only), Postgres and the load generator on the same cores",
                "customers": args.customers,
                "rate": args.rate,
                "seconds": args.seconds,
                "repeats": args.repeats,
                "get_by_id": {k: med("by_id", k) for k in ("p50_ms", "p99_ms", "achieved_rps")},
                "get_by_ref": {k: med("by_ref", k) for k in ("p50_ms", "p99_ms", "achieved_rps")},
                "audience_count_seconds": audience,
                "failed_requests": failed,
                "runs": runs,
            },
            indent=2,
        )
    )
    print(f"\nwrote {RESULTS}")


if __name__ == "__main__":
    main()
