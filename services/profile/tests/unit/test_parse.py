"""Records the profile consumer refuses before touching the database, with the field and the reason."""

import pytest
from aiokafka.structs import ConsumerRecord

from scrm_kit.errors import InvalidInput
from scrm_profile.service.consume import parse_record

GOOD = (
    b'{"event_id":"e1","tenant_id":"t1","type":"track","event":"Viewed Product","user_id":"u1",'
    b'"occurred_at":"2026-12-01T10:00:00Z","received_at":"2026-12-01T10:00:01Z","properties":{"sku":"%s"}}'
)


def record(value: bytes) -> ConsumerRecord[bytes, bytes]:
    return ConsumerRecord("events.v1", 0, 0, 0, 0, b"k", value, None, 1, len(value), [])


def test_a_record_with_a_nul_in_a_string_is_refused_naming_the_field() -> None:
    with pytest.raises(InvalidInput) as refused:
        parse_record(record(GOOD % b"sku\\u00001"))
    assert refused.value.field == "properties.sku"
    assert "NUL" in str(refused.value)


def test_text_that_only_looks_like_an_escaped_nul_is_kept() -> None:
    parsed = parse_record(record(GOOD % b"sku\\\\u0000"))  # a backslash, then the letters u0000
    assert parsed.properties == {"sku": "sku\\u0000"}
    assert parse_record(record(GOOD % b"sku-1")).properties == {"sku": "sku-1"}
