"""Plan a batch: resolve every event's customer with one lookup, and set aside what must go event by event.

Resolution is replayed in memory in arrival order over the identities the database holds, exactly as the event by
event path would resolve: unknown identifiers create a customer (a placeholder key ``new:<n>`` until it is
written), known ones name their owner. Events whose customers a merge joins, and events of customers tied to
another customer through one order id (a refund of someone else's order, one order id sent for two customers), are
deferred: the event by event path applies them after the batch, in arrival order, so merges and cross-customer
refunds keep their exact semantics. Nothing the deferred events touch is touched by the rest of the batch.
"""

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TypeAlias

from sqlalchemy.ext.asyncio import AsyncSession

from scrm_contracts import (
    OrderCompletedProperties,
    OrderRefundedProperties,
    SemanticEvent,
    TouchResult,
    TrackedEvent,
)
from scrm_profile.adapters import bulk
from scrm_profile.adapters.repository import REF_KINDS
from scrm_profile.domain.identity import MERGED_KIND, identifiers_of, normalise

Message: TypeAlias = TrackedEvent | TouchResult
NEW = "new:"


@dataclass
class Item:
    """One fresh message of the batch and the customer it applies to (None: nobody, the event is skipped)."""

    index: int
    message: Message
    key: str | None = None
    identifiers: list[tuple[str, str]] = field(default_factory=list)
    order: OrderCompletedProperties | OrderRefundedProperties | None = None  # validated, of an order or a refund
    merges: bool = False


@dataclass
class NewCustomer:
    key: str
    identifiers: list[tuple[str, str]]
    received_at: datetime


@dataclass
class Plan:
    items: list[Item]
    deferred: list[Item]
    new: dict[str, NewCustomer]
    attach: list[tuple[str, str, str]]  # (kind, value, customer key)

    def defer(self, keys: set[str]) -> None:
        """Move every event of these customers to the event by event path."""
        self.deferred += [i for i in self.items if i.key in keys]
        self.items = [i for i in self.items if i.key not in keys]
        self.attach = [a for a in self.attach if a[2] not in keys]
        for key in keys:
            self.new.pop(key, None)


def order_id_of(item: Item) -> str | None:
    message = item.message
    if not isinstance(message, TrackedEvent) or message.type != "track":
        return None
    if message.event == SemanticEvent.ORDER_COMPLETED:
        item.order = item.order or OrderCompletedProperties.model_validate(message.properties)
    elif message.event == SemanticEvent.ORDER_REFUNDED:
        item.order = item.order or OrderRefundedProperties.model_validate(message.properties)
    else:
        return None
    return item.order.order_id


def _reference(ref: str) -> tuple[str, str] | None:
    """The identity a platform event's customer reference names (as ``repository.find_customer`` reads it)."""
    if ref.startswith("cus_"):
        return MERGED_KIND, ref
    prefix, _, raw = ref.partition(":")
    kind = REF_KINDS.get(prefix, "")
    value = normalise(kind, raw, "CN") if kind else None
    return (kind, value) if kind and value is not None else None


async def plan_batch(session: AsyncSession, tenant_id: str, items: Sequence[Item], region: str) -> Plan:
    """Resolve the customers of one tenant's fresh messages and split off the ones to apply event by event."""
    pairs: list[tuple[str, str]] = []
    direct: list[str] = []
    for item in items:
        message = item.message
        if isinstance(message, TouchResult):  # our id: the customer, or the survivor of a merge
            pairs.append((MERGED_KIND, message.customer_id))
            direct.append(message.customer_id)
            continue
        if message.customer_id is not None:
            ref = _reference(message.customer_id)
            pairs += [ref] if ref else []
            direct += [message.customer_id] if message.customer_id.startswith("cus_") else []
        else:
            item.identifiers = identifiers_of(message, region)
            pairs += item.identifiers
    owner = await bulk.identity_owners(session, tenant_id, pairs)
    present = await bulk.existing_customer_ids(session, tenant_id, direct)

    plan = Plan(list(items), [], {}, [])
    joined: set[str] = set()
    for item in items:
        message = item.message
        if isinstance(message, TouchResult):  # as ``repository.add_touch`` finds its owner; None: gone, dropped
            present_id = message.customer_id in present
            item.key = message.customer_id if present_id else owner.get((MERGED_KIND, message.customer_id))
        elif message.customer_id is not None:
            ref = _reference(message.customer_id)
            item.key = message.customer_id if message.customer_id in present else owner.get(ref) if ref else None
        else:
            joined |= _resolve(item, owner, plan)
    orders: dict[str, set[str]] = defaultdict(set)
    for item in items:
        order_id = order_id_of(item) if item.key is not None else None
        if order_id is not None:
            orders[order_id].add(item.key)  # type: ignore[arg-type]
    stored = await bulk.order_owners(session, tenant_id, orders)
    for order_id, keys in orders.items():
        everyone = keys | ({stored[order_id]} if order_id in stored else set())
        if len(everyone) > 1:
            joined |= everyone
    merging = [i for i in plan.items if i.merges]
    plan.items = [i for i in plan.items if not i.merges]
    plan.defer(joined)
    plan.deferred += merging
    return plan


def _resolve(item: Item, owner: dict[tuple[str, str], str], plan: Plan) -> set[str]:
    """Resolve one identified event in memory; returns the customers it merges (none, usually)."""
    assert isinstance(item.message, TrackedEvent)
    found = list(dict.fromkeys(owner[i] for i in item.identifiers if i in owner))
    if not found:
        key = f"{NEW}{len(plan.new)}"
        plan.new[key] = NewCustomer(key, item.identifiers, item.message.received_at)
    else:
        key = found[0]
    item.key = key
    for identifier in item.identifiers:
        if identifier not in owner:
            owner[identifier] = key
            plan.attach.append((*identifier, key))
    if len(found) > 1:
        item.merges = True
        return set(found)
    return set()
