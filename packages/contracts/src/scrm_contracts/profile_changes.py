"""``profile.changes.v1``: enriched events and state changes the profile service publishes.

Every record is keyed by ``{tenant_id}:{customer_id}``; ``event_id`` is deterministic for a given change so a
replayed source event produces the same change id and downstream consumers drop the duplicate.
"""

from decimal import Decimal
from typing import Annotated, Literal

from pydantic import Field

from scrm_contracts.base import Contract, UtcDatetime
from scrm_contracts.events import SCHEMA_VERSION

LifecycleStage = Literal["prospect", "new", "active", "silent", "sleeping", "churned"]


class _Change(Contract):
    event_id: str
    tenant_id: str
    customer_id: str
    user_id: str | None = None
    occurred_at: UtcDatetime
    schema_version: int = SCHEMA_VERSION


class LifecycleStageChanged(_Change):
    type: Literal["customer.stage_changed"] = "customer.stage_changed"
    from_stage: LifecycleStage | None
    to_stage: LifecycleStage
    orders_count: int


class OrderRecorded(_Change):
    type: Literal["order.recorded"] = "order.recorded"
    order_id: str
    amount: Decimal
    currency: str
    orders_count: int
    revenue_total: Decimal


CustomerChange = Annotated[LifecycleStageChanged | OrderRecorded, Field(discriminator="type")]


def parse_profile_change(raw: bytes) -> LifecycleStageChanged | OrderRecorded | None:
    """Parse a ``profile.changes.v1`` record; ``None`` for a change type this consumer does not know yet."""
    import orjson

    data = orjson.loads(raw)
    if not isinstance(data, dict):
        raise ValueError("record is not a JSON object")
    kinds = {"customer.stage_changed": LifecycleStageChanged, "order.recorded": OrderRecorded}
    model = kinds.get(data.get("type", ""))
    if model is None:
        return None
    return model.from_wire(data)
