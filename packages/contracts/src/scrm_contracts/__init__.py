"""Event and API payload models shared by every SCRM service.

Producers build these models (extra fields forbidden); consumers parse with ``parse_*`` helpers that ignore
unknown fields, so a topic version can grow optional fields without breaking older consumers.
"""

from scrm_contracts.events import (
    SCHEMA_VERSION,
    EventType,
    OrderCompletedProperties,
    OrderRefundedProperties,
    TrackedEvent,
    record_key,
)
from scrm_contracts.profile_changes import (
    CustomerChange,
    LifecycleStageChanged,
    OrderRecorded,
    parse_profile_change,
)
from scrm_contracts.topics import Topic, dlq_topic
from scrm_contracts.touches import TouchRequest, TouchResult, TouchStatus

__all__ = [
    "SCHEMA_VERSION",
    "CustomerChange",
    "EventType",
    "LifecycleStageChanged",
    "OrderCompletedProperties",
    "OrderRecorded",
    "OrderRefundedProperties",
    "Topic",
    "TouchRequest",
    "TouchResult",
    "TouchStatus",
    "TrackedEvent",
    "dlq_topic",
    "parse_profile_change",
    "record_key",
]
