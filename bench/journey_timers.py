"""Journey engine speed on a real PostgreSQL and a real Kafka broker (started here on free ports).

1. Timers: 1,000,000 waiting instances stored (one timer each); ``--due`` of them are due. The production
   ``TimerSweep`` (batches with FOR UPDATE SKIP LOCKED) runs in ``--replicas`` side by side until every due timer
   fired; timers woken per second (target >= 5,000/s). Each wake moves the instance, records the transitions and
   writes the touch request to the outbox.
2. Latency: tracked events enter an event-triggered journey at ``--rate`` events/s; the journey service runs
   as its own process (role ``consumer``: consumer runner and outbox relay). For each touch request on
   ``touches.requests.v1``: the time from sending the triggering event to reading the request (p50/p99;
   target p99 < 200 ms at 500/s).

Writes bench/results/journey_timers.json.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
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


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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


async def store_waiting(engine: Any, tenant: str, total: int, due: int) -> float:
    """``total`` instances waiting at node ``wait``; the first ``due`` timers are due at NOW, the rest a year on."""
    started = time.perf_counter()
    chunk = 200_000
    async with engine.begin() as conn:
        for lo in range(0, total, chunk):
            hi = min(total, lo + chunk)
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


async def wake(db_url: str, tenant: str, replicas: int, batch: int) -> tuple[int, float]:
    engines = [build_engine(DbSettings(url=db_url, pool_size=2)) for _ in range(replicas)]  # type: ignore[arg-type]
    clock = FixedClock(NOW + timedelta(seconds=1))

    async def drain(engine: Any) -> int:
        sweep = TimerSweep(build_sessionmaker(engine), clock, batch, tenant_id=tenant)
        fired = 0
        while (n := await sweep()) > 0:
            fired += n
        return fired

    started = time.perf_counter()
    counts = await asyncio.gather(*(drain(e) for e in engines))
    elapsed = time.perf_counter() - started
    for engine in engines:
        await engine.dispose()
    return sum(counts), elapsed


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
        fired, elapsed = await wake(db_url, tenant, args.replicas, args.batch)
        async with engine.begin() as conn:
            await conn.execute(text("TRUNCATE journey.outbox"))  # no relay runs in this part; keep it small
        rounds.append({"round": n + 1, "stored": stored, "store_seconds": round(stored_s, 1), "fired": fired,
                       "seconds": round(elapsed, 2), "per_second": round(fired / elapsed)})  # fmt: skip
        print(f"  timers: {rounds[-1]}", flush=True)
    await engine.dispose()
    return rounds


async def latency_round(db_url: str, bootstrap: str, args: argparse.Namespace) -> dict[str, Any]:
    """Events in from this process; the journey service (its own process: consumer + outbox relay) does the rest."""
    engine = build_engine(DbSettings(url=db_url))  # type: ignore[arg-type]
    tenant = f"ten_bench_{uuid.uuid4().hex[:8]}"
    await publish(engine, tenant, "clicked", EVENT_JOURNEY)
    await engine.dispose()
    reader = AIOKafkaConsumer(Topic.TOUCH_REQUESTS.value, bootstrap_servers=bootstrap, auto_offset_reset="latest",
                              group_id=f"bench-reader-{uuid.uuid4().hex[:6]}")  # fmt: skip
    sender = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await reader.start()
    await sender.start()
    while not reader.assignment():
        await asyncio.sleep(0.2)
    await reader.seek_to_end()
    await asyncio.sleep(3)  # live journeys are cached for a moment: let the service see the new one
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    to_step: list[float] = []  # event sent -> the step ran (the touch request's requested_at)
    total = int(args.rate * args.seconds)

    async def read() -> None:
        while len(latencies) < total:
            for records in (await reader.getmany(timeout_ms=500)).values():
                now = time.perf_counter()
                for r in records:
                    request = orjson.loads(r.value)
                    if request["tenant_id"] == tenant and request["customer_id"] in sent_at:
                        sent = sent_at.pop(request["customer_id"])
                        latencies.append(now - sent)
                        stepped = datetime.fromisoformat(request["requested_at"]).timestamp()
                        to_step.append(stepped - (time.time() - (time.perf_counter() - sent)))

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
            "to_step_p50_ms": round(1000 * statistics.median(to_step), 1)}  # fmt: skip


def median_of(rounds: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in rounds))


async def run(stack: Stack, args: argparse.Namespace) -> dict[str, Any]:
    db_url = stack.postgres.url
    timers = await timer_rounds(db_url, args)
    env = stack.service_env() | {"SCRM_ROLES": "consumer", "SCRM_LOG_LEVEL": "WARNING", "SCRM_ENV": "test"}
    stack.start_service("journey", env)
    stack.wait_ready(("journey",))
    latency = []
    for _ in range(args.rounds):
        latency.append(await latency_round(db_url, stack.kafka.bootstrap, args))
        print(f"  latency: {latency[-1]}", flush=True)
    return {
        "machine": {"cpus": os.cpu_count(), "load_at_start": list(os.getloadavg())},
        "params": vars(args),
        "timers": {"rounds": timers, "median_per_second": median_of(timers, "per_second")},
        "latency": {"rounds": latency, "median_p50_ms": median_of(latency, "p50_ms"),
                    "median_p99_ms": median_of(latency, "p99_ms")},
    }  # fmt: skip


def print_table(results: dict[str, Any]) -> None:
    p = results["params"]
    print(f"\njourney engine, {p['instances']:,} waiting instances stored, {p['due']:,} due, {p['replicas']} replicas")
    print(f"{'measure':44}{'median':>12}{'target':>12}")
    print(f"{'due timers woken per second':44}{results['timers']['median_per_second']:>12,.0f}{'>= 5,000':>12}")
    rate = f"{p['rate']:.0f}/s"
    latency = results["latency"]
    print(f"{'event -> touch request p50 at ' + rate + ' (ms)':44}{latency['median_p50_ms']:>12.1f}{'':>12}")
    print(f"{'event -> touch request p99 at ' + rate + ' (ms)':44}{latency['median_p99_ms']:>12.1f}{'< 200':>12}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--instances", type=int, default=1_000_000)
    parser.add_argument("--due", type=int, default=50_000)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--rate", type=float, default=500.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    state = Path(
        tempfile.mkdtemp(prefix="bench-journey-", dir=REPO_ROOT / ".local" if (REPO_ROOT / ".local").exists() else None)
    )
    config = StackConfig(state_dir=state, pg_port=free_port(), kafka_port=free_port(), controller_port=free_port(),
                         sink_port=free_port(), service_ports={"journey": free_port()})  # fmt: skip
    stack = Stack(config, log=lambda line: print(line, file=sys.stderr))
    try:
        stack.start_infrastructure()
        results = asyncio.run(run(stack, args))
    finally:
        stack.stop()
        shutil.rmtree(state, ignore_errors=True)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(results, indent=2, default=str))
    print_table(results)
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
