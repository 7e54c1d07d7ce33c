"""The callback handler with in-memory fakes of its ports: nothing is published unless the callback is genuine."""

from collections.abc import Sequence
from datetime import UTC, datetime

import orjson
import pytest

from scrm_contracts import TrackedEvent
from scrm_ingest.domain.callbacks_config import CallbackConfig, Provider
from scrm_ingest.domain.callbacks_generic import sign
from scrm_ingest.service.callbacks import CallbackHandler
from scrm_ingest.settings import Settings
from scrm_kit.clock import FixedClock
from scrm_kit.errors import InvalidInput
from scrm_kit.tenancy import Unauthorized

NOW = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


class MemoryStore:
    def __init__(self) -> None:
        self.configs: dict[tuple[str, str], CallbackConfig] = {}

    async def load(self, tenant_id: str, provider: str) -> CallbackConfig | None:
        return self.configs.get((tenant_id, provider))

    async def save(self, config: CallbackConfig) -> None:
        self.configs[(config.tenant_id, config.provider)] = config


class MemoryPublisher:
    def __init__(self) -> None:
        self.published: list[TrackedEvent] = []

    async def publish(self, events: Sequence[TrackedEvent]) -> None:
        self.published.extend(events)


@pytest.fixture
def parts() -> tuple[CallbackHandler, MemoryPublisher]:
    publisher = MemoryPublisher()
    return CallbackHandler(MemoryStore(), publisher, Settings(), FixedClock(NOW)), publisher


async def test_a_wrong_url_secret_or_unknown_tenant_publishes_nothing(
    parts: tuple[CallbackHandler, MemoryPublisher],
) -> None:
    handler, publisher = parts
    configured = await handler.configure("t1", Provider.TENCENT_SMS)
    body = orjson.dumps([{"mobile": "13800138000", "nationcode": "86", "report_status": "SUCCESS", "sid": "s1"}])
    for tenant, secret in (("t1", "cbs_wrong"), ("t2", configured.url_secret or "")):
        with pytest.raises(Unauthorized):
            await handler.receive_with_url_secret(tenant, Provider.TENCENT_SMS, secret, "report", body)
    assert publisher.published == []
    assert configured.url_secret
    mapped = await handler.receive_with_url_secret("t1", Provider.TENCENT_SMS, configured.url_secret, "report", body)
    assert [e.event for e in publisher.published] == ["Message Delivered"] == [e.event for e in mapped.events]


async def test_generic_receipts_on_the_virtual_clock(parts: tuple[CallbackHandler, MemoryPublisher]) -> None:
    handler, publisher = parts
    secret = (await handler.configure("t1", Provider.GENERIC)).shown["secret"]
    body = orjson.dumps([{"id": "r1", "event": "Email Unsubscribed", "email": "a@example.com"}])
    with pytest.raises(Unauthorized, match="300 seconds"):
        await handler.receive_generic("t1", sign(secret, int(NOW.timestamp()) - 301, body), body)
    assert publisher.published == []
    await handler.receive_generic("t1", sign(secret, int(NOW.timestamp()) - 299, body), body)
    [event] = publisher.published
    assert event.received_at == NOW
    assert event.properties == {"email": "a@example.com"}


async def test_an_all_bad_body_is_rejected_naming_the_first_bad_field(
    parts: tuple[CallbackHandler, MemoryPublisher],
) -> None:
    handler, publisher = parts
    secret = (await handler.configure("t1", Provider.ALIYUN_SMS)).url_secret or ""
    with pytest.raises(InvalidInput) as error:
        await handler.receive_with_url_secret("t1", Provider.ALIYUN_SMS, secret, "report", b'[{"success": true}]')
    assert error.value.field == "[0].phone_number"
    with pytest.raises(InvalidInput) as error:
        await handler.receive_with_url_secret("t1", Provider.ALIYUN_SMS, secret, "report", b"{")
    assert error.value.field == "body"
    assert publisher.published == []


async def test_unsubscribe_keywords_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCRM_SMS_UNSUBSCRIBE_KEYWORDS", "STOP, 退订")
    publisher = MemoryPublisher()
    handler = CallbackHandler(MemoryStore(), publisher, Settings(), FixedClock(NOW))
    secret = (await handler.configure("t1", Provider.ALIYUN_SMS)).url_secret or ""
    replies = [
        {"phone_number": "13800138000", "content": "stop", "sequence_id": 1},
        {"phone_number": "13800138000", "content": "TD", "sequence_id": 2},
    ]
    await handler.receive_with_url_secret("t1", Provider.ALIYUN_SMS, secret, "reply", orjson.dumps(replies))
    assert [e.event for e in publisher.published] == ["SMS Unsubscribed", "Message Replied"]
