from datetime import UTC, datetime, timedelta

import pytest

from scrm_ingest.domain.segment import MessageError, to_event

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def order(**overrides: object) -> dict[str, object]:
    message: dict[str, object] = {
        "userId": "u1",
        "messageId": "m1",
        "event": "Order Completed",
        "timestamp": "2026-11-25T11:00:00Z",
        "properties": {"order_id": "o1", "total": 10, "currency": "CNY"},
    }
    message.update(overrides)
    return message


def test_order_becomes_an_event_keyed_by_message_id() -> None:
    event = to_event(order(), tenant_id="t1", kind="track", received_at=NOW)
    assert event.event_id == "m1"
    assert event.event == "Order Completed"
    assert event.occurred_at == datetime(2026, 11, 25, 11, 0, tzinfo=UTC)
    assert event.received_at == NOW


def test_clock_skew_is_corrected_with_sent_at() -> None:
    # The device clock runs 10 minutes fast: it stamped the event 5 minutes before sending.
    event = to_event(
        order(timestamp="2026-11-25T12:05:00Z", sentAt="2026-11-25T12:10:00Z"),
        tenant_id="t1",
        kind="track",
        received_at=NOW,
    )
    assert event.occurred_at == NOW - timedelta(minutes=5)


@pytest.mark.parametrize(
    ("message", "field"),
    [
        (order(userId=None), "userId"),
        (order(timestamp="2026-11-27T12:00:01Z"), "timestamp"),
        (order(properties={"order_id": "o1", "total": -1}), "properties.total"),
        (order(properties={"order_id": "o1", "total": 2e9}), "properties.total"),
        (order(properties={"total": 5}), "properties.order_id"),
        (order(properties={"order_id": "o1"}), "properties"),
        (order(event=None), "event"),
        (order(timestamp="yesterday"), "timestamp"),
        # found by the schemathesis fuzz (a 500): the first day of the calendar east of UTC is before it in UTC
        (order(sentAt="0001-01-01T00:00:00+00:01"), "sentAt"),
        (order(timestamp="0001-01-01T00:00:00+08:00"), "timestamp"),
        (order(timestamp="9999-12-31T23:59:59-01:00"), "timestamp"),
        # PostgreSQL's text cannot hold a NUL: refused here rather than dead-lettered by every consumer downstream
        (order(properties={"order_id": "o\x001", "total": 5}), "properties.order_id"),
        (order(context={"page": {"title": "\x00"}}), "context.page.title"),
        (order(userId="u\x00"), "userId"),
    ],
)
def test_bad_messages_name_the_field(message: dict[str, object], field: str) -> None:
    with pytest.raises(MessageError) as error:
        to_event(message, tenant_id="t1", kind="track", received_at=NOW)
    assert error.value.field == field


def test_nan_total_is_rejected() -> None:
    with pytest.raises(MessageError) as error:
        to_event(order(properties={"order_id": "o1", "total": "NaN"}), tenant_id="t1", kind="track", received_at=NOW)
    assert error.value.field == "properties.total"


def test_batch_items_need_a_type_and_unknown_events_pass_through() -> None:
    with pytest.raises(MessageError) as error:
        to_event(order(), tenant_id="t1", kind=None, received_at=NOW)
    assert error.value.field == "type"
    custom = to_event(
        order(type="track", event="Viewed Lookbook", properties={"look": 3}), tenant_id="t1", kind=None, received_at=NOW
    )
    assert custom.event == "Viewed Lookbook"
    assert custom.properties == {"look": 3}


def test_a_skew_correction_past_the_calendar_is_refused_naming_sent_at() -> None:
    # found by the schemathesis fuzz: a device clock 2,000 years ahead made the correction overflow (a 500)
    with pytest.raises(MessageError) as caught:
        to_event(
            order(timestamp="2000-01-01T00:00:00Z", sentAt="4026-01-01T00:00:00Z"),
            tenant_id="t1",
            kind="track",
            received_at=NOW,
        )
    assert caught.value.field == "sentAt"
