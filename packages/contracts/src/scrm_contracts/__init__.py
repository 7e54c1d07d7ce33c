"""Event and API payload models shared by every SCRM service.

Producers build these models (extra fields forbidden); consumers parse with ``from_wire`` which ignores unknown
fields, so a topic version can grow optional fields without breaking older consumers.
"""

from scrm_contracts.events import SCHEMA_VERSION, TrackedEvent, record_key
from scrm_contracts.profile_changes import (
    ClvUpdated,
    Contact,
    CustomerChange,
    CustomerErased,
    CustomersMerged,
    CustomerSnapshot,
    CustomerUpdated,
    EventTracked,
    LifecycleStageChanged,
    OrderRecorded,
    OwnerChanged,
    ProfileChange,
    Reachability,
    SegmentEntered,
    SegmentExited,
    TierChanged,
    parse_profile_change,
)
from scrm_contracts.semantic import (
    TRACK_PROPERTIES,
    IdentifyTraits,
    OrderCompletedProperties,
    OrderRefundedProperties,
    SemanticEvent,
    properties_model,
)
from scrm_contracts.topics import Topic, dlq_topic
from scrm_contracts.touches import StaffTaskSpec, TouchRequest, TouchResult, TouchStatus

__all__ = [
    "SCHEMA_VERSION",
    "TRACK_PROPERTIES",
    "ClvUpdated",
    "Contact",
    "CustomerChange",
    "CustomerErased",
    "CustomerSnapshot",
    "CustomerUpdated",
    "CustomersMerged",
    "EventTracked",
    "OwnerChanged",
    "ProfileChange",
    "Reachability",
    "SegmentEntered",
    "SegmentExited",
    "TierChanged",
    "IdentifyTraits",
    "LifecycleStageChanged",
    "OrderCompletedProperties",
    "OrderRecorded",
    "OrderRefundedProperties",
    "SemanticEvent",
    "StaffTaskSpec",
    "Topic",
    "TouchRequest",
    "TouchResult",
    "TouchStatus",
    "TrackedEvent",
    "dlq_topic",
    "parse_profile_change",
    "properties_model",
    "record_key",
]
