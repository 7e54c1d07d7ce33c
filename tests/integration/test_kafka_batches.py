"""The kit's shared per-partition batches against the real broker: many concurrent senders, each acknowledged,
every record once and in order per key."""

import asyncio
import uuid

import orjson

from scrm_kit.kafka import SharedBatches, build_producer
from scrm_kit.settings import KafkaSettings
from scrm_stack.launcher import Stack
from tests.integration.kafka_tap import tap

TOPIC = "events.v1"


async def test_many_concurrent_senders_share_batches_and_are_all_acknowledged(stack: Stack) -> None:
    """64 callers at once, each with 100 records over every partition, and a 3 s request timeout: each caller
    returns acknowledged. (Sending each caller's own batches made callers queue per partition inside aiokafka,
    whose wait there gives up early: KafkaTimeoutError, a 503 for the shop.)"""
    run = uuid.uuid4().hex[:8]
    tenant = f"batches-{run}"
    settings = KafkaSettings(bootstrap_servers=stack.kafka.bootstrap, request_timeout_ms=3000)
    producer = build_producer(settings, "-test-batches")
    await producer.start()
    callers, per_caller, keys = 64, 100, 40
    try:
        async with tap(stack.kafka.bootstrap, TOPIC) as events:
            shared = SharedBatches(producer, TOPIC)

            async def caller(c: int, round_: int) -> None:
                records = [
                    (
                        f"{tenant}:k{i % keys}".encode(),
                        orjson.dumps(
                            {"tenant_id": tenant, "caller": c, "key": i % keys, "seq": round_ * per_caller + i}
                        ),
                    )
                    for i in range(per_caller)
                ]
                await shared.send(records, timeout=30)

            for round_ in range(3):  # bursts one after another: a burst's records queue behind the one before
                await asyncio.gather(*(caller(c, round_) for c in range(callers)))
            published = await events.collect(tenant, 3 * callers * per_caller, timeout=60)
    finally:
        await producer.stop()
    assert len({(r["caller"], r["seq"]) for r in published}) == len(published) == 3 * callers * per_caller
    sequences: dict[tuple[int, int], list[int]] = {}
    for record in published:
        sequences.setdefault((record["caller"], record["key"]), []).append(record["seq"])
    assert all(seqs == sorted(seqs) for seqs in sequences.values())  # one key's records arrive in the order sent
