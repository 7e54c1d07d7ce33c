"""Kafka topic names. A breaking change to a payload makes a new topic version, never an in-place change."""

from enum import StrEnum


class Topic(StrEnum):
    EVENTS = "events.v1"
    PROFILE_CHANGES = "profile.changes.v1"
    TOUCH_REQUESTS = "touches.requests.v1"
    TOUCH_RESULTS = "touches.results.v1"


def dlq_topic(consumer_group: str) -> str:
    """The dead-letter topic of one consumer group."""
    return f"{consumer_group}.dlq"
