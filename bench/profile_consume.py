"""Profile consumer throughput on a real PostgreSQL (started here on a free port), beside a raw upsert ceiling
and the floor of the writes every event needs.

1. Consumer: ``--events`` events (orders, refunds, identifies, page views, tracked events, stored value, 2%
   redelivered) over ``--customers`` customers, in Kafka-sized batches of ``--batch``, through the production
   handler (``ProfileConsumer``: parse, inbox claim, identity resolution, events/orders/refunds, aggregates, stage,
   CLV with a fitted model, four segments, outbox), one transaction per batch as the consumer runner gives them:
   split by Kafka's partitioner, ``--in-flight`` partitions applied at once, each in offset order. Events per
   second, end to end, after a warm-up tenant and ``ANALYZE``; CPU per event of the consumer process and of the
   rest of the machine meanwhile (PostgreSQL, nearly all of it): the budget 20,000 events/s must fit in. The same
   again with two consumer processes (two replicas of the group on the same cores, each holding half the
   partitions). The event by event path runs on a sample of ``--single-events`` for comparison.
2. Ceiling: the same number of rows upserted into a table shaped like ``profile.customers``' hot columns with one
   ``INSERT ... SELECT FROM unnest ... ON CONFLICT DO UPDATE`` per batch: what PostgreSQL alone does here.
3. Floor: only the writes every event needs (inbox claim, event row, one customer update per batch, one packed
   outbox row per batch with a record per event), in the consumer's own statement shapes with values prepared
   beforehand, two sessions at once: events per second and PostgreSQL's CPU per event. What the two cores have
   left beside it is the consumer's budget.

Every round uses a fresh tenant; medians over ``--repeats`` rounds. Writes bench/results/profile_consume.json.
Run from the workspace root:  .venv/bin/python bench/profile_consume.py [--events N] [--customers N]
"""

import argparse
import asyncio
import json
import multiprocessing
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import orjson
from aiokafka.structs import ConsumerRecord
from rich.console import Console
from rich.table import Table
from sqlalchemy import text
from uvicorn.loops.auto import auto_loop_factory

from scrm_contracts import Topic, TrackedEvent
from scrm_kit.clock import FixedClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import murmur2
from scrm_kit.outbox import PACKED, OutgoingRecord, pack
from scrm_kit.runtime import tune_gc
from scrm_kit.settings import DbSettings, ServiceSettings
from scrm_profile.service.consume import ProfileConsumer
from scrm_profile.settings import Settings
from scrm_stack.launcher import REPO_ROOT, Stack, StackConfig

T = TypeVar("T")
RESULTS = Path(__file__).resolve().parent / "results" / "profile_consume.json"
NOW = datetime(2031, 6, 1, tzinfo=UTC)
CLV_PARAMS = {
    "bgnbd": {"r": 0.24, "alpha": 4.41, "a": 0.79, "b": 2.43},
    "gamma_gamma": {"p": 6.25, "q": 3.74, "v": 15.44},
}
SEGMENTS = {
    "loyal": {
        "all": [
            {"field": "orders_count", "op": "gte", "value": 2},
            {"field": "revenue_total", "op": "gte", "value": 300},
        ]
    },
    "browsers": {"event": "Viewed Product", "min_count": 3, "within_days": 30},
    "vip": {"field": "tags", "op": "contains", "value": "vip"},
    "active": {"field": "lifecycle_stage", "op": "in", "value": ["new", "active"]},
}  # fmt: skip


def stream(tenant: str, events: int, customers: int, seed: int = 11) -> list[TrackedEvent]:
    """Events in time order, each customer's in their own order (Kafka keeps a customer on one partition)."""
    rng = random.Random(seed)
    out: list[TrackedEvent] = []
    orders: list[tuple[str, str]] = []
    for n in range(events):
        c = rng.randrange(customers)
        user, at = f"u{c}", NOW - timedelta(days=365) + timedelta(seconds=n * 30)
        roll = rng.random()
        base: dict[str, Any] = {"event_id": f"e{n}", "tenant_id": tenant, "user_id": user, "occurred_at": at,
                                "received_at": at}  # fmt: skip
        if roll < 0.30:
            order_id = f"{user}-o{n}"
            orders.append((user, order_id))
            props = {"order_id": order_id, "total": str(rng.randint(500, 90_000) / 100), "currency": "CNY"}
            out.append(TrackedEvent(type="track", event="Order Completed", properties=props, **base))
        elif roll < 0.33 and orders:
            user, order_id = rng.choice(orders)
            base["user_id"] = user
            props = {"order_id": order_id} | ({"total": "5.00"} if rng.random() < 0.5 else {})
            out.append(TrackedEvent(type="track", event="Order Refunded", properties=props, **base))
        elif roll < 0.43:
            traits = {"email": f"{user}@example.com", "city": rng.choice(["Hangzhou", "Shanghai", "Chengdu"])}
            out.append(TrackedEvent(type="identify", traits=traits, **base))
        elif roll < 0.48:
            out.append(TrackedEvent(type="page", **base))
        elif roll < 0.51:
            props = {"amount": str(rng.randint(1, 500))}
            name = "Stored Value Topped Up" if rng.random() < 0.6 else "Stored Value Spent"
            out.append(TrackedEvent(type="track", event=name, properties=props, **base))
        elif roll < 0.52:
            props = {"add": ["vip"]} if rng.random() < 0.5 else {"add": ["tea"], "remove": ["vip"]}
            out.append(TrackedEvent(type="track", event="Tags Changed", properties=props, **base))
        else:
            props = {"sku": f"sku-{rng.randrange(500)}", "price": rng.randint(10, 900)}
            out.append(TrackedEvent(type="track", event="Viewed Product", properties=props, **base))
    redelivered = rng.sample(range(len(out)), k=len(out) // 50)
    for n in sorted(redelivered, reverse=True):
        out.insert(min(len(out), n + rng.randint(1, 2000)), out[n])
    return out


def as_records(messages: list[TrackedEvent]) -> list[ConsumerRecord[bytes, bytes]]:
    return [
        ConsumerRecord(Topic.EVENTS.value, 0, n, 0, 0, m.customer_key.encode(), v, None, 1, len(v), [])
        for n, m in enumerate(messages)
        for v in [m.to_wire()]
    ]


async def prepare(engine: Any, tenant: str, value: bool) -> None:
    async with engine.begin() as conn:
        for segment_id, rule in SEGMENTS.items() if value else ():
            await conn.execute(
                text(
                    "INSERT INTO profile.segments (tenant_id, segment_id, name, rule, time_dependent) "
                    "VALUES (:t, :s, :s, CAST(:r AS jsonb), false)"
                ),
                {"t": tenant, "s": segment_id, "r": json.dumps(rule)},
            )
        if value:
            await conn.execute(
                text("INSERT INTO profile.tenant_settings (tenant_id, settings, clv_params) VALUES (:t, '{}', :p)"),
                {"t": tenant, "p": json.dumps(CLV_PARAMS)},
            )


def partitioned(records: list[Any], partitions: int) -> list[list[Any]]:
    """The records split as Kafka's default partitioner places their keys, each partition in offset order."""
    parts: list[list[Any]] = [[] for _ in range(partitions)]
    for r in records:
        parts[(murmur2(r.key) & 0x7FFFFFFF) % partitions].append(r)
    return parts


async def consume(
    db_url: str, records: list[Any], batch: int, batched: bool, in_flight: int = 1
) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds) to apply every record through the production handler, as the
    consumer runner does with ``in_flight`` partitions at once (each partition's batches in order)."""
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    handler = ProfileConsumer(build_sessionmaker(engine), FixedClock(NOW), batched=batched)

    async def partition(part: list[Any]) -> None:
        for lo in range(0, len(part), batch):
            await handler(part[lo : lo + batch])

    started, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(partition(part) for part in partitioned(records, in_flight)))
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu
    await engine.dispose()
    return elapsed, cpu


def on_service_loop(main: Coroutine[Any, Any, T]) -> T:
    """Run on the event loop the service process runs its consumers on: uvicorn's (uvloop where installed, as
    ``uvicorn[standard]`` installs it), not asyncio's default."""
    with asyncio.Runner(loop_factory=auto_loop_factory()) as runner:
        return runner.run(main)


def machine_cpu_seconds() -> float | None:
    """CPU time the whole machine has spent busy (user, nice, system, irq, softirq), where Linux tells it."""
    try:
        with open("/proc/stat") as stat:
            fields = stat.readline().split()
    except OSError:
        return None
    return sum(int(fields[i]) for i in (1, 2, 3, 6, 7)) / os.sysconf("SC_CLK_TCK")


def _replica(db_url: str, records: list[Any], batch: int, in_flight: int, start: Any, out: Any) -> None:
    """One consumer process of the two-process row (a child process): applies its share once both are ready."""
    tune_gc(ServiceSettings().gc_threshold)
    start.wait()
    began = time.time()
    _, cpu = on_service_loop(consume(db_url, records, batch, True, in_flight))
    out.put((began, time.time(), cpu))


def two_processes(db_url: str, records: list[Any], batch: int, in_flight: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds of both) for two consumer processes, each holding half the partitions (two
    replicas of the consumer group on the same two cores), each applying ``in_flight`` of them at once."""
    context = multiprocessing.get_context("spawn")
    start, out = context.Barrier(2), context.Queue()
    halves = partitioned(records, 2)
    children = [context.Process(target=_replica, args=(db_url, half, batch, in_flight, start, out)) for half in halves]
    for child in children:
        child.start()
    finished = [out.get() for _ in children]
    for child in children:
        child.join()
        if child.exitcode != 0:
            raise RuntimeError(f"a consumer process failed (exit code {child.exitcode})")
    return max(f[1] for f in finished) - min(f[0] for f in finished), sum(f[2] for f in finished)


async def warm_up(db_url: str, engine: Any, args: argparse.Namespace) -> None:
    """A tenant's worth of history before the measured rounds (warm caches, tables of some size), then ``ANALYZE``:
    the steady state autovacuum keeps. The measured tenants are new each round, unknown to the statistics, as a
    fast-growing tenant is in production (the consumer's generic plans make that harmless)."""
    tenant = f"bench-{os.getpid()}-warm"
    await prepare(engine, tenant, not args.plain)
    records = as_records(stream(tenant, args.events // 2, args.customers, seed=3))
    await consume(db_url, records, args.batch, True, args.in_flight)
    await written(db_url, tenant)
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE"))


async def ceiling(db_url: str, rows: int, customers: int, batch: int) -> float:
    """Seconds to upsert ``rows`` customer-like rows, ``batch`` per statement, one transaction per batch."""
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE IF EXISTS public.bench_upsert"))
        await conn.execute(
            text(
                "CREATE TABLE public.bench_upsert (tenant_id text, customer_id text, orders_count int, "
                "revenue_total numeric(18,2), last_order_at timestamptz, traits jsonb, version bigint, "
                "PRIMARY KEY (tenant_id, customer_id))"
            )
        )
    rng = random.Random(5)
    batches = []
    for lo in range(0, rows, batch):
        ids = list(dict.fromkeys(f"cus_{rng.randrange(customers):08d}" for _ in range(min(batch, rows - lo))))
        batches.append(
            {
                "ids": ids,
                "counts": [rng.randint(0, 9) for _ in ids],
                "revenue": [Decimal(rng.randint(0, 10**6)) / 100 for _ in ids],
                "at": [NOW - timedelta(seconds=rng.randint(0, 10**7)) for _ in ids],
                "traits": [orjson.dumps({"city": "Hangzhou", "n": i}).decode() for i in range(len(ids))],
            }
        )
    sql = text(
        """
        INSERT INTO public.bench_upsert AS c (tenant_id, customer_id, orders_count, revenue_total, last_order_at,
                                              traits, version)
        SELECT 'bench', id, n, r, at, CAST(tr AS jsonb), 1
        FROM unnest(CAST(:ids AS text[]), CAST(:counts AS int[]), CAST(:revenue AS numeric[]),
                    CAST(:at AS timestamptz[]), CAST(:traits AS text[])) AS s(id, n, r, at, tr)
        ON CONFLICT (tenant_id, customer_id) DO UPDATE SET orders_count = EXCLUDED.orders_count,
            revenue_total = EXCLUDED.revenue_total, last_order_at = EXCLUDED.last_order_at,
            traits = EXCLUDED.traits, version = c.version + 1
        """
    )
    started = time.perf_counter()
    for params in batches:
        async with engine.begin() as conn:
            await conn.execute(sql, params)
    elapsed = time.perf_counter() - started
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE public.bench_upsert"))
    await engine.dispose()
    return elapsed


FLOOR_STATEMENTS = (
    "INSERT INTO profile.inbox (consumer, tenant_id, event_id) SELECT 'profile', :t, unnest(CAST(:ids AS text[])) "
    "ON CONFLICT DO NOTHING RETURNING event_id",
    "INSERT INTO profile.events (tenant_id, event_id, customer_id, event, occurred_at, properties) "
    "SELECT :t, e, c, n, at, CAST(p AS jsonb) FROM unnest(CAST(:ids AS text[]), CAST(:customers AS text[]), "
    "CAST(:names AS text[]), CAST(:at AS timestamptz[]), CAST(:props AS text[])) AS s(e, c, n, at, p) "
    "ON CONFLICT DO NOTHING RETURNING event_id",
    "UPDATE profile.customers c SET last_engagement_at = s.at, updated_at = s.at, version = c.version + 1 "
    "FROM unnest(CAST(:distinct AS text[]), CAST(:last AS timestamptz[])) AS s(id, at) "
    "WHERE c.tenant_id = :t AND c.customer_id = s.id",
    "INSERT INTO profile.outbox (topic, key, value, headers) "
    "VALUES ('profile.changes.v1', '', :packed, CAST(:headers AS jsonb))",
)


async def floor(
    db_url: str, events: int, customers: int, batch: int, connections: int = 2
) -> tuple[float, float | None]:
    """(seconds, PostgreSQL's CPU seconds where Linux tells it) for only the writes every event needs, in the
    consumer's own statement shapes: the inbox claim, the event row, one update per customer per batch, one packed
    outbox row per batch holding a record per event; values prepared beforehand, ``connections`` sessions at once
    (both cores), one transaction per batch. What is left of the machine beside this is the consumer's budget."""
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    tenant = f"bench-{os.getpid()}-floor-{time.monotonic_ns()}"
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO profile.customers (tenant_id, customer_id, lifecycle_stage, orders_count, revenue_total,"
                " created_at, updated_at, traits, tags, stored_value_balance, wecom_staff_ids,"
                " official_account_follower, sms_consent, email_consent, version)"
                " SELECT :t, 'cus_' || g, 'prospect', 0, 0, :now, :now, '{}', '{}', 0, '{}', false, 'unknown',"
                " 'unknown', 0 FROM generate_series(0, :n - 1) AS g"
            ),
            {"t": tenant, "now": NOW, "n": customers},
        )
    rng = random.Random(7)
    shares: list[list[dict[str, Any]]] = [[] for _ in range(connections)]
    for lo in range(0, events, batch):
        k = (lo // batch) % connections  # each session its own customers, as partitions keep them
        share, size = shares[k], min(batch, events - lo)
        owners = [f"cus_{rng.randrange(customers // connections) * connections + k}" for _ in range(size)]
        ids = [f"f{lo + n}" for n in range(size)]
        at = [NOW + timedelta(seconds=lo + n) for n in range(size)]
        last = dict(zip(owners, at, strict=True))
        props = [orjson.dumps({"sku": f"sku-{n % 500}", "price": n}).decode() for n in range(size)]
        share.append({"t": tenant, "ids": ids, "customers": owners, "names": ["Viewed Product"] * size, "at": at,
                      "props": props, "distinct": sorted(last), "last": [last[c] for c in sorted(last)],
                      "packed": pack([OutgoingRecord("profile.changes.v1", f"{tenant}:{c}".encode(),
                                                     orjson.dumps({"event_id": i, "properties": p}))
                                      for c, i, p in zip(owners, ids, props, strict=True)]),
                      "headers": orjson.dumps({PACKED: size}).decode()})  # fmt: skip

    async def apply(batches: list[dict[str, Any]]) -> None:
        for params in batches:
            async with engine.begin() as conn:
                for statement in FLOOR_STATEMENTS:
                    await conn.execute(text(statement), params)

    busy, cpu, started = machine_cpu_seconds(), time.process_time(), time.perf_counter()
    await asyncio.gather(*(apply(share) for share in shares))
    elapsed, cpu, busy_after = time.perf_counter() - started, time.process_time() - cpu, machine_cpu_seconds()
    async with engine.begin() as conn:
        await conn.execute(text("TRUNCATE profile.outbox"))
    await engine.dispose()
    return elapsed, None if busy is None or busy_after is None else busy_after - busy - cpu


async def written(db_url: str, tenant: str) -> dict[str, int]:
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    counts = {}
    async with engine.begin() as conn:
        for table in ("customers", "orders", "events", "refunds"):
            counts[table] = (
                await conn.execute(text(f"SELECT count(*) FROM profile.{table} WHERE tenant_id = :t"), {"t": tenant})
            ).scalar_one()
        counts["outbox"] = (await conn.execute(text("SELECT count(*) FROM profile.outbox"))).scalar_one()
        await conn.execute(text("TRUNCATE profile.outbox"))  # no relay runs here; keep it from growing round on round
    await engine.dispose()
    return counts


async def run(db_url: str, args: argparse.Namespace) -> dict[str, Any]:
    tune_gc(ServiceSettings().gc_threshold)  # as the service process does once started
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    await warm_up(db_url, engine, args)
    rounds = []
    for n in range(args.repeats):
        tenant = f"bench-{os.getpid()}-{n}"
        await prepare(engine, tenant, not args.plain)
        records = as_records(stream(tenant, args.events, args.customers))
        load = [round(v, 2) for v in os.getloadavg()]
        busy = machine_cpu_seconds()
        seconds, cpu = await consume(db_url, records, args.batch, True, args.in_flight)
        busy_after = machine_cpu_seconds()
        # the rest of the machine's busy time meanwhile: PostgreSQL, nearly all of it
        other = None if busy is None or busy_after is None else round((busy_after - busy - cpu) / len(records) * 1e6)
        counts = await written(db_url, tenant)
        raw = await ceiling(db_url, len(records), args.customers, args.batch)
        floor_s, floor_cpu = await floor(db_url, len(records), args.customers, args.batch)
        one = {"round": n + 1, "load": load, "records": len(records), "seconds": round(seconds, 2),
               "cpu_seconds": round(cpu, 2), "events_per_second": round(len(records) / seconds),
               "ceiling_rows_per_second": round(len(records) / raw), "written": counts,
               "floor_events_per_second": round(len(records) / floor_s),
               "floor_postgres_cpu_us_per_event": None if floor_cpu is None else round(floor_cpu / len(records) * 1e6),
               "consumer_cpu_us_per_event": round(cpu / len(records) * 1e6),
               "other_cpu_us_per_event": other}  # fmt: skip
        if args.two_processes:
            pair_tenant = f"{tenant}-x2"
            await prepare(engine, pair_tenant, not args.plain)
            pair = as_records(stream(pair_tenant, args.events, args.customers))
            pair_s, pair_cpu = await asyncio.to_thread(two_processes, db_url, pair, args.batch, args.in_flight)
            await written(db_url, pair_tenant)
            one["two_processes_events_per_second"] = round(len(pair) / pair_s)
            one["two_processes_cpu_seconds"] = round(pair_cpu, 2)
        if args.single_events:
            single_tenant = f"{tenant}-single"
            await prepare(engine, single_tenant, not args.plain)
            sample = as_records(stream(single_tenant, args.single_events, args.customers // 10))
            single_s, _ = await consume(db_url, sample, args.batch, batched=False)
            await written(db_url, single_tenant)
            one["single_events_per_second"] = round(len(sample) / single_s)
        rounds.append(one)
        print(f"  round {n + 1}: {one}", flush=True)
    await engine.dispose()
    return {
        "events": args.events,
        "customers": args.customers,
        "batch": args.batch,
        "partitions_in_flight": args.in_flight,
        "segments_and_clv": not args.plain,
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
        "rounds": rounds,
        "median": {
            key: statistics.median(r[key] for r in rounds)
            for key in (
                "events_per_second",
                "two_processes_events_per_second",
                "ceiling_rows_per_second",
                "floor_events_per_second",
                "floor_postgres_cpu_us_per_event",
                "single_events_per_second",
                "cpu_seconds",
                "consumer_cpu_us_per_event",
                "other_cpu_us_per_event",
            )
            if all(r.get(key) is not None for r in rounds)
        },
    }


def print_table(results: dict[str, Any]) -> None:
    table = Table(title=f"profile consumer: {results['events']:,} events over {results['customers']:,} customers, "
                  f"batches of {results['batch']}, {results['partitions_in_flight']} partitions in flight")  # fmt: skip
    columns = ("round", "load (1/5/15 min)", "one process events/s", "two processes events/s", "event by event/s",
               "raw upsert rows/s", "required writes only events/s (PG µs/event)", "ratio (one process)",
               "CPU µs/event: consumer + rest")  # fmt: skip
    for column in columns:
        table.add_column(column, justify="right")
    rows = [(str(r["round"]), " ".join(map(str, r["load"])), r) for r in results["rounds"]]
    for label, load, r in [*rows, ("median", "", results["median"])]:
        pair = r.get("two_processes_events_per_second", 0)
        table.add_row(label, load, f"{r['events_per_second']:,.0f}", f"{pair:,.0f}",
                      f"{r.get('single_events_per_second', 0):,.0f}", f"{r['ceiling_rows_per_second']:,.0f}",
                      f"{r['floor_events_per_second']:,.0f} ({r.get('floor_postgres_cpu_us_per_event', '?')})",
                      f"{r['events_per_second'] / r['ceiling_rows_per_second']:.2f}",
                      f"{r.get('consumer_cpu_us_per_event', 0)} + {r.get('other_cpu_us_per_event', '?')}")  # fmt: skip
    Console(width=150).print(table)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument(
        "--batch",
        type=int,
        default=Settings().kafka.max_batch_size,
        help="records per batch (SCRM_KAFKA__MAX_BATCH_SIZE)",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=Settings().consumer_partitions_in_flight,
        help="partitions applied at once, as the service's consumer runner does (SCRM_CONSUMER_PARTITIONS_IN_FLIGHT)",
    )
    parser.add_argument("--single-events", type=int, default=5_000, help="event by event sample (0: skip)")
    parser.add_argument(
        "--no-two-processes",
        dest="two_processes",
        action="store_false",
        help="skip the row with two consumer processes (two replicas on the same cores)",
    )
    parser.add_argument("--plain", action="store_true", help="no segments and no fitted CLV model")
    parser.add_argument("--db-url", help="use this PostgreSQL (migrated) instead of starting one")
    parser.add_argument("--results", type=Path, default=RESULTS, help="where to write the JSON")
    args = parser.parse_args()
    if args.db_url:
        results = on_service_loop(run(args.db_url, args))
    else:
        local = REPO_ROOT / ".local"
        state = Path(tempfile.mkdtemp(prefix="bench-profile-", dir=local if local.exists() else None))
        config = StackConfig.on_free_ports(state, services=())
        stack = Stack(config, log=lambda line: print(line, file=sys.stderr))
        try:
            stack.postgres.start()
            stack.migrate()
            results = on_service_loop(run(stack.postgres.url, args))
        finally:
            stack.postgres.stop()
            shutil.rmtree(state, ignore_errors=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps(results, indent=2))
    print_table(results)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
