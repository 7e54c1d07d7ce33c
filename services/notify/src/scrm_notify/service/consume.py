"""Consume ``touches.requests.v1``: parse each record and hand the batch to the delivery pipeline."""

from collections.abc import Sequence

from pydantic import ValidationError

from scrm_contracts import TouchRequest
from scrm_kit.errors import InvalidInput
from scrm_kit.kafka import Record
from scrm_notify.service.pipeline import Pipeline


def parse_record(record: Record) -> TouchRequest:
    if record.value is None:
        raise InvalidInput("record has no value", field="value")
    try:
        return TouchRequest.from_wire(record.value)
    except (ValidationError, ValueError) as exc:
        raise InvalidInput(f"malformed {record.topic} record: {exc}", field="value") from exc


class NotifyConsumer:
    """Batch handler of the ``notify`` consumer group; the offset is committed after the batch settled."""

    def __init__(self, pipeline: Pipeline) -> None:
        self._pipeline = pipeline

    async def __call__(self, records: Sequence[Record]) -> None:
        await self._pipeline.handle([parse_record(r) for r in records])
