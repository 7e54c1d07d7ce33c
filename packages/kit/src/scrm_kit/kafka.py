"""Kafka producer and the consumer runner every service uses.

The runner commits an offset only after the handler's database transaction has committed. A batch that fails
is split and retried record by record, so one poison record goes to ``<group>.dlq`` with the reason in its
headers and every other record of the batch is still applied.
"""

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime

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


def build_producer(settings: KafkaSettings, client_suffix: str = "") -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica and never writes a record twice on retry."""
    return AIOKafkaProducer(
        bootstrap_servers=settings.bootstrap_servers,
        client_id=f"{settings.client_id}{client_suffix}",
        acks="all",
        enable_idempotence=settings.enable_idempotence,
        linger_ms=settings.linger_ms,
        request_timeout_ms=settings.request_timeout_ms,
        max_batch_size=1_048_576,
    )


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
        max_records: int = 500,
        retry_attempts: int = 6,
        retry_base_delay: float = 0.2,
        dead_letter_topic: str | None = None,
    ) -> None:
        self.group = group
        self.topics = list(topics)
        self._settings = settings
        self._handler = handler
        self._producer = producer
        self._max_records = max_records
        self._retry_attempts = retry_attempts
        self._retry_base_delay = retry_base_delay
        self._dead_letter_topic = dead_letter_topic or dlq_topic(group)
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
            auto_offset_reset="earliest",
            isolation_level="read_committed",
            session_timeout_ms=self._settings.session_timeout_ms,
            request_timeout_ms=max(self._settings.request_timeout_ms, self._settings.session_timeout_ms + 5000),
            max_poll_records=self._max_records,
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
                batches = await consumer.getmany(timeout_ms=300, max_records=self._max_records)
            except Exception:
                logger.exception("fetch failed; retrying", extra={"group": self.group})
                await asyncio.sleep(1)
                continue
            # Ready once it holds partitions; a replica beyond the partition count holds none, so after a
            # few healthy polls it is ready too (it takes over on the next rebalance).
            self.ready = self.ready or bool(consumer.assignment()) or time.monotonic() - started_at > 10
            for tp, records in batches.items():
                if not records:
                    continue
                async with self._lock:
                    started = time.perf_counter()
                    await self._apply(records)
                    await consumer.commit({tp: records[-1].offset + 1})
                    BATCH_SECONDS.labels(self.group).observe(time.perf_counter() - started)
            await self._record_lag(consumer)

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
            CONSUMED.labels(self.group, records[0].topic, "ok").inc(len(records))
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
