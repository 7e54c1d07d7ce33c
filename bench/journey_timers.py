"""Journey engine speed on a real PostgreSQL and a real Kafka broker (started here on free ports).

1. Timers: 1,000,000 waiting instances stored (one timer each); ``--due`` of them are due. The production
   ``TimerSweep`` (batches with FOR UPDATE SKIP LOCKED) runs in ``--replicas`` processes side by side, as replicas
   run in production (``--in-process``: all on one event loop), until every due timer fired; timers woken per
   second (target >= 5,000/s). Each wake moves the instance, records the transitions and
   writes the touch request to the outbox.
2. Latency: tracked events enter an event-triggered journey at ``--rate`` events/s; the journey service runs
   as its own process (role ``consumer``: consumer runner and outbox relay). For each touch request on
   ``touches.requests.v1``: the time from sending the triggering event to reading the request (p50/p99;
   target p99 < 200 ms at 500/s).

Each part runs ``--rounds`` times; the table shows every round, the median and the load (``uptime``) around it,
because the build machine is shared. Writes bench/results/journey_timers.json (``--part latency`` alone:
journey_latency.json). ``--profile`` records py-spy stacks of the
service (folded, for flamegraph tools) for each latency round.
"""

import argparse
import asyncio
import json
import multiprocessing
import os
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

import orjson
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import text

from scrm_contracts import EventTracked, Topic, record_key
from scrm_journey.service.timers import TimerSweep
from scrm_kit.clock import FixedClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.settings import DbSettings
from scrm_stack.launcher import REPO_ROOT, Stack, StackConfig

RESULTS = Path(__file__).resolve().parent / "results" / "journey_timers.json"
NOW = datetime(2031, 6, 1, tzinfo=UTC)
WAIT_JOURNEY = {
    "name": "bench wait",
    "trigger": {"type": "event", "event": "Bench Wait"},
    "start": "wait",
    "nodes": {
        "wait": {"type": "wait", "duration": {"days": 1}, "next": "hello"},
        "hello": {"type": "send_touch", "channels": ["wecom", "sms"], "template_id": "hello"},
    },
}
EVENT_JOURNEY = {
    "name": "bench event",
    "trigger": {"type": "event", "event": "Bench Clicked"},
    "start": "hello",
    "nodes": {"hello": {"type": "send_touch", "channels": ["wecom"], "template_id": "hello"}},
}


async def publish(engine: Any, tenant: str, journey_id: str, document: dict[str, Any]) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            text(
                "INSERT INTO journey.journeys (tenant_id, journey_id, name, status, draft, published_version, "
                "created_at, updated_at) VALUES (:t, :j, :n, 'active', CAST(:d AS jsonb), 1, now(), now())"
            ),
            {"t": tenant, "j": journey_id, "n": document["name"], "d": json.dumps(document)},
        )
        await conn.execute(
            text(
                "INSERT INTO journey.journey_versions (tenant_id, journey_id, version, definition, published_at) "
                "VALUES (:t, :j, 1, CAST(:d AS jsonb), now())"
            ),
            {"t": tenant, "j": journey_id, "d": json.dumps(document)},
        )


async def store_waiting(engine: Any, tenant: str, total: int, due: int, first: int = 0) -> float:
    """``total`` instances waiting at node ``wait``; the first ``due`` timers are due at NOW, the rest a year on."""
    started = time.perf_counter()
    chunk = 200_000
    async with engine.begin() as conn:
        for lo in range(first, first + total, chunk):
            hi = min(first + total, lo + chunk)
            params = {"t": tenant, "lo": lo, "hi": hi - 1, "due": due, "now": NOW}
            await conn.execute(
                text(
                    "INSERT INTO journey.instances (instance_id, tenant_id, journey_id, journey_version, customer_id,"
                    " user_id, state, current_node, holdout, context, entered_at, updated_at) "
                    "SELECT 'bi_' || g, :t, 'wait', 1, 'c' || g, 'u' || g, 'waiting', 'wait', false, '{}'::jsonb, "
                    ":now, :now FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) g"
                ),
                params,
            )
            await conn.execute(
                text(
                    "INSERT INTO journey.timers (timer_id, tenant_id, kind, journey_id, customer_id, instance_id, "
                    "due_at, paused) SELECT 'step:bi_' || g, :t, 'step', 'wait', 'c' || g, 'bi_' || g, "
                    "CASE WHEN g < :due THEN CAST(:now AS timestamptz) - (g % 3600) * interval '1 second' "
                    "ELSE CAST(:now AS timestamptz) + interval '365 days' END, false "
                    "FROM generate_series(CAST(:lo AS int), CAST(:hi AS int)) g"
                ),
                params,
            )
        await conn.execute(text("ANALYZE journey.timers"))
        await conn.execute(text("ANALYZE journey.instances"))
    return time.perf_counter() - started


async def drain(db_url: str, tenant: str, batch: int) -> int:
    """One scheduler replica: the production sweep, looping while batches come back full, until nothing is due."""
    engine = build_engine(DbSettings(url=db_url, pool_size=2))  # type: ignore[arg-type]
    sweep = TimerSweep(build_sessionmaker(engine), FixedClock(NOW + timedelta(seconds=1)), batch, tenant_id=tenant)
    fired = 0
    while (n := await sweep()) > 0:
        fired += n
    await engine.dispose()
    return fired


def replica_process(db_url: str, tenant: str, batch: int, ready: Any, go: Any, done: Any) -> None:
    """A scheduler replica in its own process, as in production; starts when the parent says go."""
    asyncio.run(build_engine(DbSettings(url=db_url)).dispose())  # type: ignore[arg-type]  # imports done
    ready.put(True)
    go.wait()
    fired = asyncio.run(drain(db_url, tenant, batch))
    done.put((fired, time.monotonic()))


async def wake(db_url: str, tenant: str, replicas: int, batch: int, in_process: bool) -> tuple[int, float]:
    if in_process:  # every replica on this process's one event loop (one core for all the Python work)
        started = time.monotonic()
        counts = await asyncio.gather(*(drain(db_url, tenant, batch) for _ in range(replicas)))
        return sum(counts), time.monotonic() - started
    context = multiprocessing.get_context("spawn")
    ready, go, done = context.Queue(), context.Event(), context.Queue()
    processes = [context.Process(target=replica_process, args=(db_url, tenant, batch, ready, go, done))
                 for _ in range(replicas)]  # fmt: skip
    for process in processes:
        process.start()
    for _ in processes:  # the clock starts once every replica has imported everything
        await asyncio.to_thread(ready.get, True, 300)
    started = time.monotonic()
    go.set()
    results = [await asyncio.to_thread(done.get, True, 600) for _ in processes]
    for process in processes:
        process.join(timeout=30)
    return sum(fired for fired, _ in results), max(end for _, end in results) - started


async def vacuum(engine: Any) -> None:
    async with engine.connect() as conn:
        conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
        for table in ("timers", "instances", "transitions", "outbox"):
            await conn.execute(text(f"VACUUM ANALYZE journey.{table}"))


async def timer_rounds(db_url: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Store the instances once; each round makes ``--due`` of the far-future timers due and drains them."""
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    tenant = f"ten_bench_{uuid.uuid4().hex[:8]}"
    await publish(engine, tenant, "wait", WAIT_JOURNEY)
    stored_s = await store_waiting(engine, tenant, args.instances, 0)
    rounds = []
    for n in range(args.rounds):
        if n:  # the last round completed --due instances: store as many new waiting ones
            await store_waiting(engine, tenant, args.due, 0, first=args.instances + (n - 1) * args.due)
        load = os.getloadavg()[0]
        async with engine.begin() as conn:
            stored = (
                await conn.execute(text("SELECT count(*) FROM journey.timers WHERE tenant_id = :t"), {"t": tenant})
            ).scalar()
            await conn.execute(
                text(
                    "UPDATE journey.timers SET due_at = CAST(:now AS timestamptz) - (random() * interval '1 hour') "
                    "WHERE timer_id IN (SELECT timer_id FROM journey.timers WHERE tenant_id = :t "
                    "AND due_at > :now ORDER BY timer_id LIMIT :due)"
                ),
                {"t": tenant, "now": NOW, "due": args.due},
            )
        await vacuum(engine)  # what autovacuum does between bursts: deleted timers leave the due-time index
        fired, elapsed = await wake(db_url, tenant, args.replicas, args.batch, args.in_process)
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE journey.outbox"))  # no relay runs in this part; keep it small
        rounds.append({"round": n + 1, "stored": stored, "store_seconds": round(stored_s, 1), "fired": fired,
                       "seconds": round(elapsed, 2), "per_second": round(fired / elapsed),
                       "load_1m": [round(load, 2), round(os.getloadavg()[0], 2)]})  # fmt: skip
        print(f"  timers: {rounds[-1]}", flush=True)
    await engine.dispose()
    return rounds


async def latency_round(db_url: str, bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    """Events in from this process; the journey service (its own process: consumer + outbox relay) does the rest."""
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    tenant = f"ten_bench_{uuid.uuid4().hex[:8]}"
    await publish(engine, tenant, "clicked", EVENT_JOURNEY)
    await engine.dispose()
    # Like notify's consumer would: fetches answered as soon as a record is there (no 500 ms hold on quiet partitions).
    reader = AIOKafkaConsumer(Topic.TOUCH_REQUESTS.value, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                              group_id=f"bench-reader-{uuid.uuid4().hex[:6]}", fetch_max_wait_ms=20)  # fmt: skip
    sender = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await reader.start()
    await sender.start()
    while not reader.assignment():
        await asyncio.sleep(0.2)
    await reader.seek_to_end()
    await asyncio.sleep(3)  # live journeys are cached for a moment: let the service see the new one
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    # Where the time goes, per request: event sent -> the step ran (the request's requested_at) -> the relay
    # handed it to the producer (the record's CreateTime) -> read here.
    stages: dict[str, list[float]] = {"to_step": [], "to_relay": [], "to_reader": []}
    total = int(args.rate * args.seconds)

    async def read() -> None:
        while len(latencies) < total:
            for records in (await reader.getmany(timeout_ms=500)).values():
                now = time.perf_counter()
                wall = time.time()
                for r in records:
                    request = orjson.loads(r.value)
                    if request["tenant_id"] == tenant and request["customer_id"] in sent_at:
                        sent = sent_at.pop(request["customer_id"])
                        latencies.append(now - sent)
                        sent_wall = wall - (now - sent)
                        stepped = datetime.fromisoformat(request["requested_at"]).timestamp()
                        stages["to_step"].append(stepped - sent_wall)
                        stages["to_relay"].append(r.timestamp / 1000 - stepped)
                        stages["to_reader"].append(wall - r.timestamp / 1000)

    async def send() -> None:
        start = time.perf_counter()
        for n in range(total):
            await asyncio.sleep(max(0.0, start + n / args.rate - time.perf_counter()))
            customer = f"c{n}"
            change = EventTracked(
                event_id=f"e{n}",
                tenant_id=tenant,
                customer_id=customer,
                user_id=f"u{n}",
                occurred_at=datetime.now(UTC),
                event="Bench Clicked",
                source_event_id=f"s{n}",
            )
            sent_at[customer] = time.perf_counter()
            await sender.send(Topic.PROFILE_CHANGES.value, change.to_wire(), key=record_key(tenant, customer))

    reading = asyncio.create_task(read())
    await send()
    await asyncio.wait_for(reading, timeout=120)
    await reader.stop()
    await sender.stop()
    ordered = sorted(latencies)
    return {"events": total, "rate": args.rate, "p50_ms": round(1000 * ordered[len(ordered) // 2], 1),
            "p99_ms": round(1000 * ordered[int(len(ordered) * 0.99) - 1], 1),
            "max_ms": round(1000 * ordered[-1], 1),
            **{f"{stage}_{q}_ms": round(1000 * quantile(values, q), 1) for stage, values in stages.items()
               for q in ("p50", "p99")}}  # fmt: skip


STAGES = {
    "to_step": "event sent -> step ran",
    "to_relay": "step ran -> relay sent",
    "to_reader": "relay sent -> read",
}


def quantile(values: list[float], q: str) -> float:
    ordered = sorted(values)
    return ordered[max(0, int(len(ordered) * int(q[1:]) / 100) - 1)] if q != "p50" else statistics.median(ordered)


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


def uptime() -> str:
    """What ``uptime`` says: the machine is shared, so every figure goes with the load it was measured under."""
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "load average: " + ", ".join(f"{x:.2f}" for x in os.getloadavg())


def profile(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """py-spy on the journey service while a latency round runs (``--profile``): folded stacks next to the JSON."""
    uvx = shutil.which("uvx") or str(REPO_ROOT / ".cache" / "bootstrap" / "bin" / "uvx")
    command = [uvx, "py-spy", "record", "-p", str(pid), "-d", str(int(seconds)), "-f", "raw", "--nonblocking"]
    command += ["-o", str(out)]
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


async def latency_rounds(stack: Stack, args: argparse.Namespace) -> list[dict[str, Any]]:
    env = stack.service_env() | {"SCRM_ROLES": "consumer", "SCRM_LOG_LEVEL": "WARNING", "SCRM_ENV": "test"}
    stack.start_service("journey", env)
    stack.wait_ready(("journey",))
    rounds = []
    for n in range(args.rounds):
        spy = None
        if args.profile:
            out = RESULTS.parent / f"journey_latency_round{n + 1}.folded"
            spy = profile(stack.processes["journey"].pid, args.seconds + 5, out)
        load = os.getloadavg()[0]
        found = await latency_round(stack.postgres.url, stack.kafka.bootstrap, args)
        found["load_1m"] = [round(load, 2), round(os.getloadavg()[0], 2)]
        rounds.append(found)
        if spy is not None:
            spy.wait(timeout=60)
        print(f"  latency: {rounds[-1]}", flush=True)
    return rounds


def consumer_batches(stack: Stack) -> dict[str, float]:
    """The service's own account of its consumer batches (apply + offset commit), from its /metrics."""
    import httpx

    text_ = httpx.get(f"{stack.url('journey')}/metrics", timeout=10).text
    found: dict[str, float] = {}
    for line in text_.splitlines():
        if line.startswith("scrm_consumer_batch_seconds_") and 'group="journey"' in line:
            name, value = line.rsplit(" ", 1)
            found[name.replace("scrm_consumer_batch_seconds_", "").replace('group="journey",', "")] = float(value)
    return found


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    results: dict[str, Any] = {
        "machine": {"cpus": os.cpu_count(), "uptime_at_start": uptime()},
        "params": vars(args),
    }
    if args.part in ("all", "timers"):
        timers = await timer_rounds(stack.postgres.url, args)
        results["timers"] = {"rounds": timers, "median_per_second": median_of(timers, "per_second")}
    if args.part in ("all", "latency"):
        latency = await latency_rounds(stack, args)
        results["latency"] = {"rounds": latency, "median_p50_ms": median_of(latency, "p50_ms"),
                              "median_p99_ms": median_of(latency, "p99_ms"),
                              "consumer_batches": consumer_batches(stack)}  # fmt: skip
    results["machine"]["uptime_at_end"] = uptime()
    return results


def print_table(results: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    p = results["params"]
    table = Table(title=f"journey engine ({results['machine']['cpus']} CPUs, shared; {p['rounds']} rounds)")
    table.add_column("measure")
    for n in range(p["rounds"]):
        table.add_column(f"round {n + 1}", justify="right")
    table.add_column("median", justify="right", style="bold")
    table.add_column("target", justify="right")
    if "timers" in results:
        rounds = results["timers"]["rounds"]
        title = f"due timers woken /s ({p['instances']:,} stored, {p['due']:,} due, {p['replicas']} replicas)"
        cells = [f"{r['per_second']:,}" for r in rounds]
        table.add_row(title, *cells, f"{results['timers']['median_per_second']:,.0f}", ">= 5,000")
        table.add_row("  load (1 min) before / after", *[f"{a} / {b}" for a, b in (r["load_1m"] for r in rounds)])
    if "latency" in results:
        rounds = results["latency"]["rounds"]
        rate = f"{p['rate']:.0f}/s"
        stages = [
            ("p50_ms", f"event -> touch request p50 at {rate} (ms)", ""),
            ("p99_ms", f"event -> touch request p99 at {rate} (ms)", "< 200"),
        ]
        for stage, label in STAGES.items():
            stages += [(f"{stage}_{q}_ms", f"  {label} {q} (ms)", "") for q in ("p50", "p99")]
        for key, name, target in stages:
            median = f"{median_of(rounds, key):,.1f}"
            table.add_row(name, *[f"{r[key]:,.1f}" for r in rounds], median, target)
        table.add_row("  load (1 min) before / after", *[f"{a} / {b}" for a, b in (r["load_1m"] for r in rounds)])
    console = Console(width=150)
    console.print(table)
    console.print(f"start: {results['machine']['uptime_at_start']}\nend:   {results['machine']['uptime_at_end']}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=50_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--in-process", action="store_true", help="scheduler replicas on one event loop")
    parser.add_argument("--part", choices=("all", "timers", "latency"), default="all")
    parser.add_argument("--profile", action="store_true", help="py-spy flame graphs of the service (latency part)")
    args = parser.parse_args()
    state = Path(
        tempfile.mkdtemp(prefix="bench-journey-", dir=REPO_ROOT / ".local" if (REPO_ROOT / ".local").exists() else None)
    )
    config = StackConfig.on_free_ports(state, services=("journey",))
    stack = Stack(config, log=lambda line: print(line, file=sys.stderr))
    RESULTS.parent.mkdir(exist_ok=True)
    try:
        stack.start_infrastructure()
        results = asyncio.run(run(stack, args))
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
    out = RESULTS if args.part == "all" else RESULTS.with_name(f"journey_{args.part}.json")
    out.write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
