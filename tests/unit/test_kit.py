"""Unit tests of the kit's pure parts: the consumer runner's poison isolation, settings, log masking."""

import random
from collections.abc import Sequence
from typing import Any

import pytest
from aiokafka.structs import ConsumerRecord

from scrm_kit.errors import InvalidInput, RetryableError
from scrm_kit.kafka import ConsumerRunner, Record
from scrm_kit.logging import mask_personal_data
from scrm_kit.outbox import OutgoingRecord, pack, unpack
from scrm_kit.settings import KafkaSettings, ServiceSettings


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes | None, dict[str, bytes]]] = []

    async def send_and_wait(self, topic: str, value: bytes | None, key: bytes | None, headers: Any) -> None:
        self.sent.append((topic, value, dict(headers)))


def record(offset: int, value: bytes) -> Record:
    return ConsumerRecord("events.v1", 0, offset, 0, 0, b"k", value, None, len(b"k"), len(value), [])


def runner(handler: Any, producer: FakeProducer, **options: Any) -> ConsumerRunner:
    return ConsumerRunner(
        settings=options.pop("settings", KafkaSettings()),
        group="profile",
        topics=["events.v1"],
        handler=handler,
        producer=producer,  # type: ignore[arg-type]
        retry_attempts=3,
        retry_base_delay=0.001,
        **options,
    )


async def test_one_poison_record_is_dead_lettered_and_the_rest_applied() -> None:
    applied: list[bytes] = []

    async def handler(records: Sequence[Record]) -> None:
        if any(r.value == b"poison" for r in records):
            raise InvalidInput("malformed record", field="value")
        applied.extend(r.value for r in records if r.value)

    producer = FakeProducer()
    await runner(handler, producer)._apply([record(0, b"a"), record(1, b"poison"), record(2, b"b")])
    assert applied == [b"a", b"b"]
    assert len(producer.sent) == 1
    topic, value, headers = producer.sent[0]
    assert (topic, value) == ("profile.dlq", b"poison")
    assert headers["dlq.kind"] == b"permanent"
    assert headers["dlq.offset"] == b"1"
    assert b"malformed record" in headers["dlq.reason"]


async def test_retryable_failures_are_retried_then_dead_lettered() -> None:
    calls = 0

    async def flaky(records: Sequence[Record]) -> None:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise RetryableError("database briefly away")

    producer = FakeProducer()
    await runner(flaky, producer)._apply([record(0, b"a")])
    assert calls == 3 and producer.sent == []

    async def down(records: Sequence[Record]) -> None:
        raise RetryableError("database down")

    await runner(down, producer)._apply([record(5, b"z")])
    assert producer.sent[0][2]["dlq.kind"] == b"retries_exhausted"


def test_roles_and_nested_settings_come_from_the_environment(monkeypatch: Any) -> None:
    monkeypatch.setenv("SCRM_ROLES", "api, consumer")
    monkeypatch.setenv("SCRM_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9092")
    settings = ServiceSettings()
    assert settings.roles == ["api", "consumer"]
    assert settings.kafka.bootstrap_servers == "kafka-1:9092"


def test_phones_and_emails_are_masked_in_logs() -> None:
    masked = mask_personal_data("customer 13812345678 <li.wei@example.com> +8613912345678")
    assert "13812345678" not in masked and "li.wei@" not in masked
    assert "138****5678" in masked
    assert "l***@example.com" in masked


def test_the_cached_partitioner_places_every_key_where_kafkas_default_does() -> None:
    import random

    from aiokafka.partitioner import DefaultPartitioner

    from scrm_kit.kafka import CachedKeyPartitioner

    cached, default = CachedKeyPartitioner(max_keys=50), DefaultPartitioner()
    rng = random.Random(7)
    partitions = list(range(12))
    keys = [f"ten_{rng.randrange(5)}:user-{rng.randrange(400)}".encode() for _ in range(2_000)]
    # twice over, with a cache smaller than the key set, so cached, evicted and fresh keys are all compared
    for key in keys + keys:
        assert cached(key, partitions, partitions) == default(key, partitions, partitions)
    assert cached(None, partitions, [3]) == 3


def test_our_murmur2_is_kafkas_for_keys_of_every_length_and_byte() -> None:
    import random

    from aiokafka.partitioner import murmur2 as reference

    from scrm_kit.kafka import murmur2

    rng = random.Random(11)
    keys = [bytes(rng.randrange(256) for _ in range(length)) for length in range(70) for _ in range(30)]
    keys += ["租户:客户-1".encode(), b"\xff" * 9, b""]
    for key in keys:
        assert murmur2(key) == reference(key), key


def test_a_lost_database_connection_is_a_503_and_other_database_errors_stay_500s() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from sqlalchemy.exc import DBAPIError, OperationalError, ProgrammingError

    from scrm_kit.runtime import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.get("/lost")
    async def lost() -> None:
        raise DBAPIError("SELECT 1", None, ConnectionResetError("connection was closed"), connection_invalidated=True)

    @app.get("/down")
    async def down() -> None:
        raise OperationalError("SELECT 1", None, OSError("could not connect"))

    @app.get("/bug")
    async def bug() -> None:
        raise ProgrammingError("SELEC 1", None, ValueError("syntax error"))

    client = TestClient(app, raise_server_exceptions=False)
    for path in ("/lost", "/down"):
        answer = client.get(path)
        assert answer.status_code == 503, path
        assert answer.json()["error"]["code"] == "unavailable"
    assert client.get("/bug").status_code == 500


def test_nul_characters_are_found_where_they_are() -> None:
    from scrm_kit.textcheck import nul_in_json, nul_path

    assert nul_path({"needs": [{"channel": "sms", "template_id": "a\x00b"}]}) == "needs.0.template_id"
    assert nul_path({"traits": {"ci\x00ty": "x"}}) == "traits.ci\\u0000ty"  # a key holds it
    assert nul_path("\x00") == "body"
    assert nul_path({"fine": ["text", 1, None, {"k": "v"}]}) is None
    assert nul_in_json(b'{"a": {"b": "\\u0000"}}') == "a.b"
    assert nul_in_json(b'{"a": "\\\\u0000"}') is None  # an escaped backslash, then the letters u0000: no NUL
    assert nul_in_json(b"not json \\u0000") is None


def test_a_nul_in_the_url_or_a_json_body_is_a_400_naming_where_before_the_handler_runs() -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient
    from pydantic import BaseModel

    from scrm_kit.runtime import RejectNul, install_error_handlers

    class Need(BaseModel):
        template_id: str

    class Needs(BaseModel):
        needs: list[Need]

    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(RejectNul, raw_body_paths=("/raw",))
    handled: list[object] = []

    @app.get("/tasks")
    async def tasks(staff_id: str = "") -> dict[str, str]:
        handled.append(staff_id)
        return {"staff_id": staff_id}

    @app.post("/check")
    async def check(body: Needs) -> dict[str, int]:
        handled.append(body)
        return {"needs": len(body.needs)}

    @app.post("/raw")
    async def raw(body: dict[str, str]) -> dict[str, int]:
        handled.append(body)
        return {"raw": len(body)}

    client = TestClient(app)
    refused = client.get("/tasks", params={"staff_id": "st\x001"})
    assert refused.status_code == 400
    assert refused.json()["error"]["field"] == "staff_id"
    assert "NUL" in refused.json()["error"]["message"]
    refused = client.post("/check", json={"needs": [{"template_id": "ok"}, {"template_id": "t\x00"}]})
    assert (refused.status_code, refused.json()["error"]["field"]) == (400, "needs.1.template_id")
    assert handled == []  # neither reached its handler
    assert client.get("/tasks", params={"staff_id": "st_1"}).json() == {"staff_id": "st_1"}
    big = {"needs": [{"template_id": f"t{n}" * 50} for n in range(2000)]}  # a body of many chunks, replayed whole
    assert client.post("/check", json=big).json() == {"needs": 2000}
    assert client.post("/raw", json={"a": "\x00"}).json() == {"raw": 1}  # left to the route to check


class FakeConsumer:
    def __init__(self) -> None:
        self.committed: dict[Any, int] = {}

    async def commit(self, offsets: dict[Any, int]) -> None:
        self.committed.update(offsets)


async def test_partitions_in_flight_are_handled_at_once_each_in_order_and_committed() -> None:
    import asyncio

    from aiokafka import TopicPartition

    running, most, seen = 0, 0, []

    async def slow(records: Sequence[Record]) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        seen.extend((r.partition, r.offset) for r in records)
        running -= 1

    def part(p: int, n: int) -> tuple[TopicPartition, list[Record]]:
        return TopicPartition("events.v1", p), [
            ConsumerRecord("events.v1", p, o, 0, 0, b"k", b"v", None, 1, 1, []) for o in range(n)
        ]

    r = runner(slow, FakeProducer(), max_records=2, partitions_in_flight=2)
    consumer = FakeConsumer()
    await r._handle_concurrently(consumer, [[part(0, 5)], [part(1, 3)], [part(2, 1)]])  # type: ignore[arg-type]
    assert most == 2  # never more than the limit, and the limit is used
    for p, n in ((0, 5), (1, 3), (2, 1)):
        assert [o for q, o in seen if q == p] == list(range(n))  # each partition in offset order
    assert {tp.partition: o for tp, o in consumer.committed.items()} == {0: 5, 1: 3, 2: 1}


async def test_a_group_whose_failure_escapes_is_not_committed_and_the_others_are() -> None:
    from aiokafka import TopicPartition

    class BrokenProducer(FakeProducer):
        async def send_and_wait(self, topic: str, value: bytes | None, key: bytes | None, headers: Any) -> None:
            raise ConnectionError("dead-letter topic unreachable")

    async def handler(records: Sequence[Record]) -> None:
        if any(r.value == b"poison" for r in records):
            raise InvalidInput("malformed record", field="value")

    r = runner(handler, BrokenProducer(), partitions_in_flight=2)
    good = (TopicPartition("events.v1", 0), [record(7, b"a")])
    bad = (TopicPartition("events.v1", 1), [ConsumerRecord("events.v1", 1, 3, 0, 0, b"k", b"poison", None, 1, 6, [])])
    consumer = FakeConsumer()
    with pytest.raises(ConnectionError, match="unreachable"):
        await r._handle_concurrently(consumer, [[good], [bad]])  # type: ignore[arg-type, list-item]
    assert {tp.partition: o for tp, o in consumer.committed.items()} == {0: 8}


def test_a_runner_takes_its_batch_size_from_the_kafka_settings_unless_given() -> None:
    settings = KafkaSettings(max_batch_size=750)
    assert runner(None, FakeProducer(), settings=settings)._max_records == 750  # SCRM_KAFKA__MAX_BATCH_SIZE
    assert runner(None, FakeProducer(), settings=settings, max_records=200)._max_records == 200


def test_packed_outbox_records_unpack_to_exactly_what_was_packed() -> None:
    """Keys and values of every length, empty ones and bytes that look like frame headers among them."""
    rng = random.Random(3)
    records = [
        OutgoingRecord("t", rng.randbytes(rng.choice([0, 1, 7, 300])), rng.randbytes(rng.choice([0, 8, 999, 70_000])))
        for _ in range(200)
    ]
    assert unpack(pack(records)) == [(r.key, r.value) for r in records]
    assert unpack(pack([])) == []
