"""Kafka producer and the consumer runner every service uses.

The runner commits an offset only after the handler's database transaction has committed. A batch that fails
is split and retried record by record, so one poison record goes to ``<group>.dlq`` with the reason in its
headers and every other record of the batch is still applied.
"""

import asyncio
import logging
import random
import struct
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.structs import ConsumerRecord

from scrm_contracts import dlq_topic
from scrm_kit.errors import PermanentError, RetryableError
from scrm_kit.logging import log_context
from scrm_kit.metrics import BATCH_SECONDS, CONSUMED, CONSUMER_LAG
from scrm_kit.settings import KafkaSettings

logger = logging.getLogger(__name__)

Record = ConsumerRecord[bytes, bytes]
BatchHandler = Callable[[Sequence[Record]], Awaitable[None]]


_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """Kafka's murmur2 (the Java client's default partitioner), the same hash as aiokafka's ``murmur2`` in half the
    time: the 4-byte words are unpacked in one call and no mask is applied twice."""
    length = len(data)
    h = 0x9747B28C ^ length
    for k in struct.unpack_from(f"<{length >> 2}I", data):
        k = (k * _M) & _MASK
        k = ((k ^ (k >> 24)) * _M) & _MASK
        h = ((h * _M) & _MASK) ^ k
    tail, base = length & 3, length & ~3
    if tail:
        if tail == 3:
            h ^= data[base + 2] << 16
        if tail >= 2:
            h ^= data[base + 1] << 8
        h = ((h ^ data[base]) * _M) & _MASK
    h = ((h ^ (h >> 13)) * _M) & _MASK
    return h ^ (h >> 15)


class CachedKeyPartitioner:
    """Kafka's default (Java-compatible murmur2) partitioning, remembering each key's hash: the pure-Python
    murmur2 is the single biggest cost of a send, and the same customers' keys come back again and again."""

    def __init__(self, max_keys: int = 200_000) -> None:
        self._hashes: dict[bytes, int] = {}
        self._max_keys = max_keys

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return random.choice(available or all_partitions)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self._max_keys:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


def build_producer(settings: KafkaSettings, client_suffix: str = "") -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica and never writes a record twice on retry."""
    return AIOKafkaProducer(
        partitioner=CachedKeyPartitioner(),
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}{client_suffix}",
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=settings.linger_ms,
        request_timeout_ms=settings.request_timeout_ms,
        max_batch_size=1_048_576,
    )


class BatchedSender:
    """Send many keyed records to one topic as whole per-partition batches, then wait for every acknowledgement.

    Placement is the default partitioner's, so records of one key stay in order with records sent one by one; a
    batch skips the per-record future and accumulator work of ``send``, which dominates bulk publishing."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitioner: CachedKeyPartitioner | None = None) -> None:
        self._producer = producer
        self._topic = topic
        self._partitioner = partitioner or CachedKeyPartitioner()
        self._partitions: list[int] = []
        self._open: dict[int, Any] = {}
        self._sent: list[tuple[asyncio.Future[Any], int]] = []

    async def append(self, key: bytes, value: bytes, headers: Sequence[tuple[str, bytes]] = ()) -> None:
        if not self._partitions:
            self._partitions = sorted(await self._producer.partitions_for(self._topic))
        partition = self._partitioner(key, self._partitions, self._partitions)
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = self._producer.create_batch()
        if batch.append(timestamp=None, key=key, value=value, headers=list(headers)) is None:
            await self._send(partition)
            batch = self._open[partition] = self._producer.create_batch()
            if batch.append(timestamp=None, key=key, value=value, headers=list(headers)) is None:
                raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")

    async def flush(self, timeout: float) -> int:
        """Send what is open and wait until Kafka acknowledged everything; the number of records acknowledged."""
        for partition in list(self._open):
            await self._send(partition)
        sent, self._sent = self._sent, []
        if sent:
            await asyncio.wait_for(asyncio.gather(*(future for future, _ in sent)), timeout=timeout)
        return sum(count for _, count in sent)

    async def _send(self, partition: int) -> None:
        batch = self._open.pop(partition)
        batch.close()
        future = await self._producer.send_batch(batch, self._topic, partition=partition)
        self._sent.append((future, batch.record_count()))


class _SharedBatch:
    __slots__ = ("builder", "acked")

    def __init__(self, builder: Any, acked: asyncio.Future[None]) -> None:
        self.builder = builder
        self.acked = acked

    def settle(self, ack: asyncio.Future[Any]) -> None:
        """Copy the producer's acknowledgement (or its error) to the future every caller of this batch waits on."""
        error = RuntimeError("the send was cancelled") if ack.cancelled() else ack.exception()
        if error is not None:
            self.fail(error)
        elif not self.acked.done():
            self.acked.set_result(None)

    def fail(self, error: BaseException) -> None:
        if not self.acked.done():
            self.acked.set_exception(error)
            self.acked.exception()  # retrieved: callers that still wait re-raise it themselves


class SharedBatches:
    """Records of concurrent callers to one topic, gathered into shared per-partition batches (a group commit).

    Each partition has a queue of batches; the last one is open to every caller's appends. One drain task per
    partition hands them to the producer in order, each as soon as Kafka has taken the one before, so the batch
    that waits collects the records of every request that arrives meanwhile: a burst of requests costs a few
    large batches rather than one small batch per request and partition, and a lone caller sends at once (no
    linger). A caller returns when every batch holding one of its records is acknowledged.

    One sender per partition also keeps callers out of aiokafka's ``add_batch`` wait, whose timeout shrinks faster
    than time passes when many callers queue on one partition (16 concurrent ``/v1/batch`` requests of 100 events
    got ``KafkaTimeoutError`` there)."""

    def __init__(self, producer: AIOKafkaProducer, topic: str, partitioner: CachedKeyPartitioner | None = None) -> None:
        self._producer = producer
        self._topic = topic
        self._partitioner = partitioner or CachedKeyPartitioner()
        self._partitions: list[int] = []
        self._partitions_read = 0.0
        self._queues: dict[int, deque[_SharedBatch]] = {}
        self._drains: dict[int, asyncio.Task[None]] = {}

    async def send(self, records: Iterable[tuple[bytes, bytes]], timeout: float | None = None) -> None:
        """Append ``(key, value)`` records and wait (at most ``timeout`` seconds, if given) until Kafka acknowledged
        all of them, or raise."""
        if time.monotonic() - self._partitions_read > 60:  # a topic may gain partitions while we run
            self._partitions = sorted(await self._producer.partitions_for(self._topic))
            self._partitions_read = time.monotonic()
        partitions = self._partitions
        loop = asyncio.get_running_loop()
        waiting: dict[int, _SharedBatch] = {}
        for key, value in records:
            partition = self._partitioner(key, partitions, partitions)
            queue = self._queues.get(partition)
            if queue is None:
                queue = self._queues[partition] = deque()
            batch = queue[-1] if queue else None
            if batch is None or batch.builder.append(timestamp=None, key=key, value=value, headers=[]) is None:
                batch = _SharedBatch(self._producer.create_batch(), loop.create_future())
                if batch.builder.append(timestamp=None, key=key, value=value, headers=[]) is None:
                    raise ValueError(f"a record of {len(value)} bytes does not fit in a batch")
                queue.append(batch)
            waiting[id(batch)] = batch
            if partition not in self._drains:
                self._drains[partition] = asyncio.create_task(self._drain(partition, queue))
        if waiting:
            acks = (asyncio.shield(batch.acked) for batch in waiting.values())
            await asyncio.wait_for(asyncio.gather(*acks), timeout=timeout)

    async def _drain(self, partition: int, queue: deque[_SharedBatch]) -> None:
        try:
            while queue:
                batch = queue.popleft()
                batch.builder.close()
                try:
                    ack = await self._producer.send_batch(batch.builder, self._topic, partition=partition)
                except Exception as exc:
                    batch.fail(exc)
                    continue
                ack.add_done_callback(batch.settle)
        finally:
            del self._drains[partition]


class _CommitBeforeRevoke(ConsumerRebalanceListener):
    def __init__(self, lock: asyncio.Lock) -> None:
        self._lock = lock

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        # The runner commits each batch while holding the lock; waiting for it means finished work is committed.
        async with self._lock:
            pass

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        return None


class ConsumerRunner:
    """Runs one consumer group member: fetch, apply through the handler, commit, dead-letter poison records."""

    def __init__(
        self,
        *,
        settings: KafkaSettings,
        group: str,
        topics: Sequence[str],
        handler: BatchHandler,
        producer: AIOKafkaProducer,
        max_records: int | None = None,
        retry_attempts: int = 6,
        retry_base_delay: float = 0.2,
        combine_partitions: bool = False,
        dead_letter_topic: str | None = None,
        fetch_max_wait_ms: int = 500,
        auto_offset_reset: str = "earliest",
        partitions_in_flight: int = 1,
    ) -> None:
        self.group = group
        self.topics = list(topics)
        self._settings = settings
        self._handler = handler
        self._producer = producer
        self._max_records = max_records or settings.max_batch_size  # SCRM_KAFKA__MAX_BATCH_SIZE unless given
        self._retry_attempts = retry_attempts
        self._retry_base_delay = retry_base_delay
        # One transaction for everything a poll returned (all partitions), instead of one per partition: fewer
        # round trips per record when many partitions each carry a few records. Offsets still commit after it.
        self._combine_partitions = combine_partitions
        self._dead_letter_topic = dead_letter_topic or dlq_topic(group)
        # How long the broker may hold a fetch with no new data. Only one fetch is in flight per broker, and it
        # leaves out partitions whose records are still being handled: a long wait on quiet partitions delays
        # the next records of busy ones by up to this much. Latency-sensitive consumers set it low.
        self._fetch_max_wait_ms = fetch_max_wait_ms
        # Where a group without committed offsets starts: "latest" for consumers whose work is worthless late.
        self._auto_offset_reset = auto_offset_reset
        # How many partitions' batches are handled at once (each partition's records stay in order, one batch at
        # a time). Above 1, one batch's database round trips overlap another's CPU work in this process.
        if partitions_in_flight < 1:
            raise ValueError("partitions_in_flight must be at least 1")
        self._in_flight = partitions_in_flight
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None
        self.ready = False
        self.name = f"consumer:{group}"

    async def start(self) -> None:
        self._consumer = AIOKafkaConsumer(
            bootstrap_servers=self._settings.bootstrap_servers,
            group_id=self.group,
            client_id=f"{self._settings.client_id}-{self.group}",
            enable_auto_commit=False,
            auto_offset_reset=self._auto_offset_reset,
            isolation_level="read_committed",
            session_timeout_ms=self._settings.session_timeout_ms,
            request_timeout_ms=max(self._settings.request_timeout_ms, self._settings.session_timeout_ms + 5000),
            max_poll_records=self._max_records,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
        )
        await self._consumer.start()
        self._consumer.subscribe(self.topics, listener=_CommitBeforeRevoke(self._lock))
        self._task = asyncio.create_task(self._run(), name=f"consumer:{self.group}")

    async def stop(self) -> None:
        """Finish the batch in hand, commit it, leave the group."""
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=30)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
        if self._consumer is not None:
            await self._consumer.stop()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        assert self._consumer is not None
        consumer = self._consumer
        started_at = time.monotonic()
        while not self._stopping.is_set():
            try:
                batches = await consumer.getmany(timeout_ms=300, max_records=self._max_records * self._in_flight)
            except Exception:
                logger.exception("fetch failed; retrying", extra={"group": self.group})
                await asyncio.sleep(1)
                continue
            # Ready once it holds partitions; a replica beyond the partition count holds none, so after a
            # few healthy polls it is ready too (it takes over on the next rebalance).
            self.ready = self.ready or bool(consumer.assignment()) or time.monotonic() - started_at > 10
            ready = [(tp, records) for tp, records in batches.items() if records]
            groups = [ready] if self._combine_partitions and ready else [[one] for one in ready]
            if self._in_flight == 1:
                for group in groups:
                    async with self._lock:
                        await self._handle(group)
                        await consumer.commit({tp: records[-1].offset + 1 for tp, records in group})
            elif groups:
                async with self._lock:  # a rebalance waits for every batch in flight
                    await self._handle_concurrently(consumer, groups)
            await self._record_lag(consumer)

    async def _handle(self, group: Sequence[tuple[TopicPartition, list[Record]]]) -> None:
        """Apply one group's records, ``max_records`` at a time, in offset order."""
        records = [record for _, part in group for record in part]
        for lo in range(0, len(records), self._max_records):
            started = time.perf_counter()
            await self._apply(records[lo : lo + self._max_records])
            BATCH_SECONDS.labels(self.group).observe(time.perf_counter() - started)

    async def _handle_concurrently(
        self, consumer: AIOKafkaConsumer, groups: Sequence[Sequence[tuple[TopicPartition, list[Record]]]]
    ) -> None:
        """Up to ``partitions_in_flight`` groups at once; the offsets of every group that finished are committed
        (one that failed is fetched again after the error surfaces)."""
        gate = asyncio.Semaphore(self._in_flight)

        async def one(group: Sequence[tuple[TopicPartition, list[Record]]]) -> None:
            async with gate:
                await self._handle(group)

        outcomes = await asyncio.gather(*(one(group) for group in groups), return_exceptions=True)
        offsets = {
            tp: records[-1].offset + 1
            for group, outcome in zip(groups, outcomes, strict=True)
            if outcome is None
            for tp, records in group
        }
        if offsets:
            await consumer.commit(offsets)
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    async def _record_lag(self, consumer: AIOKafkaConsumer) -> None:
        for tp in consumer.assignment():
            highwater = consumer.highwater(tp)
            if highwater is None:
                continue
            try:
                position = await consumer.position(tp)
            except Exception:  # noqa: BLE001 - lag is best effort
                continue
            CONSUMER_LAG.labels(self.group, tp.topic, str(tp.partition)).set(max(0, highwater - position))

    async def _apply(self, records: Sequence[Record]) -> None:
        try:
            await self._with_retries(records)
            for topic in {r.topic for r in records}:
                CONSUMED.labels(self.group, topic, "ok").inc(sum(1 for r in records if r.topic == topic))
            return
        except Exception as exc:
            if len(records) == 1:
                await self._dead_letter(records[0], exc)
                return
        # Isolate the poison record(s): apply one by one.
        for record in records:
            token = log_context.set({"topic": record.topic, "partition": record.partition, "offset": record.offset})
            try:
                await self._with_retries([record])
                CONSUMED.labels(self.group, record.topic, "ok").inc()
            except Exception as exc:  # noqa: BLE001 - every failure is dead-lettered with its reason
                await self._dead_letter(record, exc)
            finally:
                log_context.reset(token)

    async def _with_retries(self, records: Sequence[Record]) -> None:
        attempt = 0
        while True:
            try:
                await self._handler(records)
                return
            except RetryableError:
                attempt += 1
                if attempt >= self._retry_attempts or self._stopping.is_set():
                    raise
                delay = self._retry_base_delay * 2 ** (attempt - 1) * (0.5 + random.random())
                logger.warning("retryable failure, attempt %d; backing off %.2fs", attempt, delay)
                await asyncio.sleep(delay)

    async def _dead_letter(self, record: Record, exc: BaseException) -> None:
        kind = "permanent" if isinstance(exc, PermanentError | ValueError) else "retries_exhausted"
        if not isinstance(exc, PermanentError | ValueError | RetryableError):
            kind = "unexpected"
        reason = f"{type(exc).__name__}: {exc}"[:2000]
        headers = [
            ("dlq.reason", reason.encode()),
            ("dlq.kind", kind.encode()),
            ("dlq.group", self.group.encode()),
            ("dlq.topic", record.topic.encode()),
            ("dlq.partition", str(record.partition).encode()),
            ("dlq.offset", str(record.offset).encode()),
            ("dlq.failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        await self._producer.send_and_wait(self._dead_letter_topic, value=record.value, key=record.key, headers=headers)
        CONSUMED.labels(self.group, record.topic, "dead_lettered").inc()
        log = logger.error if kind == "unexpected" else logger.warning
        log(
            "record dead-lettered",
            extra={
                "group": self.group,
                "topic": record.topic,
                "partition": record.partition,
                "offset": record.offset,
                "reason": reason,
            },
            exc_info=kind == "unexpected",
        )
