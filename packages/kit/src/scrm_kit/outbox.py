"""Transactional outbox and inbox.

A handler writes its state change and the records it must publish in one transaction (``enqueue``); the relay
publishes them and deletes them only after Kafka acknowledged. A consumer records each processed ``event_id`` in
the same transaction as its writes (``claim_new``), so a redelivered record changes nothing.

An outbox row holds one record, or (``enqueue(..., packed=True)``) every record of one topic a handler enqueued at
once: ``value`` frames them and compresses the frames (``pack``: zlib, level 1), ``key`` is empty and ``headers`` is
``{"scrm.packed": <count>}``. A consumer batch that publishes a thousand records writes one row of about 60 kB
instead of a thousand rows (or one of 600 kB, which PostgreSQL would itself try, slowly, to compress, and store in
300 TOAST chunks). The relay publishes a packed row's records in their order, as if they were rows. (A relay older
than packing fails on such a row, since it encodes every header value as text, and leaves it to the new ones: a
rolling upgrade publishes nothing garbled.)
"""

import asyncio
import json
import logging
import struct
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from aiokafka import AIOKafkaProducer
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Identity,
    LargeBinary,
    MetaData,
    Table,
    Text,
    bindparam,
    cast,
    func,
    literal,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_kit.kafka import BatchedSender, CachedKeyPartitioner
from scrm_kit.metrics import OUTBOX_PENDING, OUTBOX_PUBLISHED

logger = logging.getLogger(__name__)


def outbox_table(metadata: MetaData) -> Table:
    return Table(
        "outbox",
        metadata,
        Column("id", BigInteger, Identity(), primary_key=True),
        Column("topic", Text, nullable=False),
        Column("key", LargeBinary, nullable=False),
        Column("value", LargeBinary, nullable=False),
        Column("headers", JSONB, nullable=True),
        Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


def inbox_table(metadata: MetaData) -> Table:
    return Table(
        "inbox",
        metadata,
        Column("consumer", Text, primary_key=True),
        Column("tenant_id", Text, primary_key=True),
        Column("event_id", Text, primary_key=True),
        Column("processed_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    )


@dataclass(frozen=True, slots=True)
class OutgoingRecord:
    topic: str
    key: bytes
    value: bytes
    headers: tuple[tuple[str, str], ...] = ()


FRAME = struct.Struct(">II")  # a packed record: key length, value length, then the key and value bytes
PACKED = "scrm.packed"  # the header of a packed row: how many records its value holds
TURN_RETRY = 0.01  # seconds a relay woken for its own records waits for another relay's turn to end


def pack(records: Sequence[OutgoingRecord]) -> bytes:
    """Frame records (no headers) into one compressed outbox value."""
    return zlib.compress(b"".join(FRAME.pack(len(r.key), len(r.value)) + r.key + r.value for r in records), 1)


def unpack(value: bytes, count: int | None = None) -> list[tuple[bytes, bytes]]:
    """The (key, value) records ``pack`` framed, in their order; ValueError if the frames are cut short or (given
    ``count``) hold another number of records: a damaged row fails the relay rather than publish mangled records."""
    found: list[tuple[bytes, bytes]] = []
    frames = zlib.decompress(value)
    view, at, end = memoryview(frames), 0, len(frames)
    while at < end:
        if at + FRAME.size > end:
            raise ValueError(f"packed outbox value: a frame header cut short at byte {at} of {end}")
        key_length, value_length = FRAME.unpack_from(view, at)
        at += FRAME.size
        if at + key_length + value_length > end:
            raise ValueError(f"packed outbox value: a record cut short at byte {at} of {end}")
        found.append((bytes(view[at : at + key_length]), bytes(view[at + key_length : at + key_length + value_length])))
        at += key_length + value_length
    if count is not None and len(found) != count:
        raise ValueError(f"packed outbox value: {len(found)} records where its header says {count}")
    return found


async def enqueue(
    session: AsyncSession, table: Table, records: Iterable[OutgoingRecord], *, packed: bool = False
) -> None:
    """Add records to the outbox inside the caller's transaction; ``packed``: one row per topic for all of them
    (records with headers always get rows of their own)."""
    rows = list(records)
    if packed and len(rows) > 1 and not any(r.headers for r in rows):
        by_topic: dict[str, list[OutgoingRecord]] = {}
        for r in rows:
            by_topic.setdefault(r.topic, []).append(r)
        await session.execute(
            table.insert(),
            [{"topic": t, "key": b"", "value": pack(rs), "headers": {PACKED: len(rs)}} for t, rs in by_topic.items()],
        )
        return
    if rows:
        # One statement over arrays: far cheaper than a multi-row VALUES for big batches.
        columns = select(
            func.unnest(bindparam("topics", [r.topic for r in rows], type_=ARRAY(Text))),
            func.unnest(bindparam("keys", [r.key for r in rows], type_=ARRAY(LargeBinary))),
            func.unnest(bindparam("values", [r.value for r in rows], type_=ARRAY(LargeBinary))),
            cast(func.unnest(bindparam("headers", [_headers_json(r) for r in rows], type_=ARRAY(Text))), JSONB),
        )
        await session.execute(table.insert().from_select(["topic", "key", "value", "headers"], columns))


def claim_statement(table: Table) -> Any:
    """The relay's claim, one round trip: take the table's turn (a transaction-scoped advisory lock, without
    waiting), then delete the oldest rows holding about ``:budget`` records (a packed row counts its records; the
    first row always comes) among the oldest ``:rows`` and return them. When another relay has the turn, nothing
    is locked or deleted and the one row returned is all NULL."""
    name = f"{table.schema}.{table.name}" if table.schema else table.name
    return text(
        f"""
        WITH turn AS MATERIALIZED (SELECT pg_try_advisory_xact_lock(hashtext('outbox relay {name}')) AS ours),
        claimed AS (
            DELETE FROM {name} WHERE id IN (
                SELECT id FROM (
                    SELECT id, sum(records) OVER (ORDER BY id) - records AS before
                    FROM (SELECT id, coalesce((headers->>'{PACKED}')::int, 1) AS records FROM {name}
                          WHERE (SELECT ours FROM turn)  -- once, before any row is read or locked
                          ORDER BY id LIMIT :rows FOR UPDATE SKIP LOCKED) AS oldest
                ) AS counted
                WHERE before < :budget)
            RETURNING id, topic, key, value, headers)
        SELECT id, topic, key, value, headers FROM claimed
        UNION ALL
        SELECT NULL, NULL, NULL, NULL, NULL FROM turn WHERE NOT turn.ours
        """
    ).columns(id=BigInteger, topic=Text, key=LargeBinary, value=LargeBinary, headers=JSONB)


def _headers_json(record: OutgoingRecord) -> str | None:
    return json.dumps(dict(record.headers)) if record.headers else None


async def claim_new(
    session: AsyncSession, table: Table, consumer: str, keys: Sequence[tuple[str, str]]
) -> set[tuple[str, str]]:
    """Record (tenant_id, event_id) pairs as processed; return the ones never seen before."""
    if not keys:
        return set()
    unique = list(dict.fromkeys(keys))
    pairs = select(
        literal(consumer, Text),
        func.unnest(bindparam("tenant_ids", [t for t, _ in unique], type_=ARRAY(Text))),
        func.unnest(bindparam("event_ids", [e for _, e in unique], type_=ARRAY(Text))),
    )
    stmt = (
        insert(table)
        .from_select(["consumer", "tenant_id", "event_id"], pairs)
        .on_conflict_do_nothing()
        .returning(table.c.tenant_id, table.c.event_id)
    )
    result = await session.execute(stmt)
    return {(row.tenant_id, row.event_id) for row in result}


class OutboxRelay:
    """Publishes outbox rows in id order; any number of relays share the table, one publishing at a time.

    A relay publishes only while it holds the table's transaction-scoped advisory lock, taken without waiting:
    another relay's turn is skipped, not waited for. Two relays publishing at once would each hold a stretch of
    the rows (one claim's rows are locked until Kafka acknowledged them) and could publish a later stretch before
    an earlier one, so one key's records (a ``segment.entered`` and its ``segment.exited``) out of order; one at a
    time, every record goes out in the order it was enqueued. Further relays are standbys: a relay killed
    mid-publish releases the lock with its connection and the next claim, by any relay, starts where it stopped.

    An idle relay polls every ``idle_interval`` seconds; a handler in the same process calls ``wake()`` after it
    committed records, so they go out at once instead of waiting half an interval on average. A batch is claimed
    and deleted in one statement and published as closed per-partition batches (no linger); the transaction
    commits only after Kafka acknowledged every record, so a failure leaves the rows for the next attempt.
    """

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        table: Table,
        producer: AIOKafkaProducer,
        batch_size: int = 500,
        idle_interval: float = 0.05,
        ack_timeout: float = 60.0,
    ) -> None:
        self._sessions = sessions
        self._table = table
        self._producer = producer
        self._batch_size = batch_size
        self._idle_interval = idle_interval
        self._ack_timeout = ack_timeout
        self._stopping = asyncio.Event()
        self._wakeup = asyncio.Event()
        self._partitioner = CachedKeyPartitioner()  # one for the relay's life: it remembers each key's hash
        self._claim = claim_statement(table)
        self._task: asyncio.Task[None] | None = None

    name = "outbox-relay"

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        self._wakeup.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=15)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    def wake(self) -> None:
        """Records were just committed: publish now rather than at the next poll."""
        self._wakeup.set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def relay_once(self) -> int:
        """Publish one batch (about ``batch_size`` records, and at least one row); return how many went out (0 when
        another relay is publishing the table)."""
        return await self._relay_once() or 0

    async def _relay_once(self) -> int | None:
        """``relay_once``; None when it is another relay's turn."""
        async with self._sessions() as session, session.begin():
            result = await session.execute(self._claim, {"rows": self._batch_size, "budget": self._batch_size})
            rows = result.all()
            if rows and rows[0].id is None:
                return None
            rows.sort(key=lambda r: r.id)
            if not rows:
                return 0
            senders: dict[str, BatchedSender] = {}
            published: Counter[str] = Counter()
            for r in rows:
                if r.topic not in senders:
                    senders[r.topic] = BatchedSender(self._producer, r.topic, self._partitioner)
                sender = senders[r.topic]
                headers = r.headers or {}
                if PACKED not in headers:
                    await sender.append(r.key, r.value, [(k, v.encode()) for k, v in headers.items()])
                    published[r.topic] += 1
                    continue
                for key, value in unpack(r.value, headers[PACKED]):
                    await sender.append(key, value)
                published[r.topic] += headers[PACKED]
            await asyncio.gather(*(sender.flush(self._ack_timeout) for sender in senders.values()))
        for topic, count in published.items():
            OUTBOX_PUBLISHED.labels(topic).inc(count)
        return sum(published.values())

    async def _run(self) -> None:
        while not self._stopping.is_set():
            woken = self._wakeup.is_set()
            self._wakeup.clear()
            try:
                turn = await self._relay_once()
                if turn is None and (woken or self._wakeup.is_set()):
                    # This process committed records while another relay publishes: it may stop short of them
                    # (its claim was made before they were), so try again as soon as its turn is likely over.
                    await asyncio.sleep(TURN_RETRY)
                    self._wakeup.set()
                    continue
                sent = turn or 0
                OUTBOX_PENDING.set(0 if sent < self._batch_size else self._batch_size)
            except Exception:
                logger.exception("outbox relay failed; retrying")
                sent = 0
                await asyncio.sleep(1)
            if sent < self._batch_size:
                try:
                    await asyncio.wait_for(self._wakeup.wait(), timeout=self._idle_interval)
                except TimeoutError:
                    pass
