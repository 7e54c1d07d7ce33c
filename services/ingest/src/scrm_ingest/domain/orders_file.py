"""Historical orders from a file (CSV or NDJSON), one order per line, as Segment ``Order Completed`` messages.

Columns: ``customer_id`` (the shop's user id), ``order_id``, ``occurred_at``, ``total``, ``currency``; optional
identity columns (``anonymous_id``, ``phone``, ``email``, ``wecom_external_userid``, ``wechat_unionid``,
``wechat_openid``); any other column becomes an order property. The messageId is derived from the order id, so
importing the same file twice, or an order the shop also sent live with that id, adds nothing.
"""

from typing import Any

from scrm_ingest.domain.segment import MessageError

REQUIRED = ("customer_id", "order_id", "occurred_at", "total", "currency")
IDENTITY = ("phone", "email", "wecom_external_userid", "wechat_unionid", "wechat_openid")
ORDER_FIELDS = ("order_id", "total", "currency")

# Where a validation error on the built message points back to in the file.
_COLUMN_OF = {
    "userId": "customer_id",
    "anonymousId": "anonymous_id",
    "timestamp": "occurred_at",
    "messageId": "order_id",
    "properties.order_id": "order_id",
    "properties.total": "total",
    "properties.revenue": "total",
    "properties.currency": "currency",
}


def missing_columns(header: list[str]) -> list[str]:
    """Required columns the header lacks."""
    return [c for c in REQUIRED if c not in header]


def message_id(order_id: str) -> str:
    return f"order:{order_id}"


def order_message(row: dict[str, Any]) -> dict[str, Any]:
    """The Segment track message for one file row; raises ``MessageError`` naming the column."""
    values = {k: v for k, v in row.items() if k is not None and v not in (None, "")}
    for column in REQUIRED:
        if column not in values:
            raise MessageError(column, "is required")
    order_id = str(values["order_id"]).strip()
    properties: dict[str, Any] = {
        k: v for k, v in values.items() if k not in REQUIRED and k not in IDENTITY and k != "anonymous_id"
    }
    properties.update(order_id=order_id, total=values["total"], currency=values["currency"])
    traits = {k: values[k] for k in IDENTITY if k in values}
    message: dict[str, Any] = {
        "type": "track",
        "event": "Order Completed",
        "messageId": message_id(order_id),
        "userId": str(values["customer_id"]),
        "timestamp": values["occurred_at"],
        "properties": properties,
        "context": {"library": {"name": "scrm-import"}, "traits": traits}
        if traits
        else {"library": {"name": "scrm-import"}},
    }
    if "anonymous_id" in values:
        message["anonymousId"] = str(values["anonymous_id"])
    return message


def column_of(field: str) -> str:
    """The file column a message field came from (``properties.total`` -> ``total``)."""
    if field in _COLUMN_OF:
        return _COLUMN_OF[field]
    if field.startswith("context.traits."):
        return field.removeprefix("context.traits.")
    return field.removeprefix("properties.")
