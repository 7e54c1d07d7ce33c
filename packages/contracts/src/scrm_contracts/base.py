"""Base models: strict for producers, tolerant for consumers."""

from datetime import UTC, datetime
from typing import Annotated, Any, Self

from pydantic import AfterValidator, BaseModel, ConfigDict


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]
"""A datetime normalised to UTC; naive values are taken as UTC."""


class Contract(BaseModel):
    """A payload on the wire. Built by producers with no unknown fields."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @classmethod
    def from_wire(cls, raw: bytes | str | dict[str, Any]) -> Self:
        """Parse a record as a consumer: unknown fields (added by a newer producer) are dropped."""
        if isinstance(raw, dict):
            data = raw
        else:
            import orjson

            data = orjson.loads(raw)
        if not isinstance(data, dict):
            raise ValueError("record is not a JSON object")
        known = {k: v for k, v in data.items() if k in cls.model_fields}
        return cls.model_validate(known)

    def to_wire(self) -> bytes:
        """Serialise for Kafka: compact UTF-8 JSON."""
        return self.__pydantic_serializer__.to_json(self)  # model_dump_json's bytes, before it decodes them
