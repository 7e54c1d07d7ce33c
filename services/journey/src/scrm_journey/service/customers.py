"""Replicated customer state: snapshots (newer versions only), date-trigger entry timers, merges and erasure."""

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.dialects.postgresql import insert

from scrm_contracts import CustomerErased, CustomersMerged, CustomerUpdated
from scrm_journey.adapters.definitions import LiveJourney
from scrm_journey.adapters.orm import instances, snapshots, timers, transitions
from scrm_journey.adapters.writes import entry_timer_id
from scrm_journey.domain.triggers import is_dated, next_entry
from scrm_journey.service.engine import JourneyEngine


async def apply_snapshots(engine: JourneyEngine, updates: list[CustomerUpdated]) -> list[CustomerUpdated]:
    """Store each customer's newest snapshot; returns the updates that were newer than what we held."""
    newest: dict[tuple[str, str], CustomerUpdated] = {}
    for update_ in updates:
        key = (update_.tenant_id, update_.customer_id)
        if key not in newest or newest[key].version < update_.version:
            newest[key] = update_
    if not newest:
        return []
    base = insert(snapshots)
    stmt = base.on_conflict_do_update(
        index_elements=[snapshots.c.tenant_id, snapshots.c.customer_id],
        set_={
            "version": base.excluded.version,
            "snapshot": base.excluded.snapshot,
            "user_id": base.excluded.user_id,
            "updated_at": base.excluded.updated_at,
        },
        where=snapshots.c.version < base.excluded.version,
    ).returning(snapshots.c.tenant_id, snapshots.c.customer_id)
    rows = [
        {
            "tenant_id": u.tenant_id,
            "customer_id": u.customer_id,
            "user_id": u.user_id,
            "version": u.version,
            "snapshot": u.snapshot.model_dump(mode="json"),
            "updated_at": engine.now,
        }
        for u in newest.values()
    ]
    applied = {(r.tenant_id, r.customer_id) for r in await engine.session.execute(stmt, rows)}
    for tenant_id, customer_id in applied:
        engine.forget_facts(tenant_id, customer_id)
    return [u for k, u in newest.items() if k in applied]


def schedule_entries(
    engine: JourneyEngine,
    tenant_id: str,
    customer_id: str,
    facts: dict[str, Any],
    live: list[LiveJourney],
    after: datetime | None = None,
) -> None:
    """(Re)compute when each date-triggered journey next enters this customer."""
    for journey in live:
        if not is_dated(journey.definition):
            continue
        timer_id = entry_timer_id(tenant_id, journey.journey_id, customer_id)
        due = next_entry(journey.definition, facts, after or engine.now)
        if due is None:
            engine.writes.clear_timer(timer_id)
        else:
            engine.writes.set_timer(timer_id, "entry", tenant_id, journey.journey_id, customer_id, due)


async def merge(engine: JourneyEngine, change: CustomersMerged) -> None:
    """Move the merged customers' instances to the survivor, closing any the survivor already runs."""
    losers = [c for c in change.merged_customer_ids if c != change.customer_id]
    if not losers:
        return
    tenant = change.tenant_id
    survivor_running = {i.journey_id for i in await engine.running(tenant, change.customer_id)}
    for loser in losers:
        for instance in await engine.running(tenant, loser):
            if instance.journey_id in survivor_running:
                engine.end(instance, "exited", f"merged into {change.customer_id}")
            else:
                survivor_running.add(instance.journey_id)
    await engine.flush()
    for customer_id in [change.customer_id, *losers]:
        engine.forget(tenant, customer_id)
    await engine.session.execute(
        update(instances)
        .where(instances.c.tenant_id == tenant, instances.c.customer_id.in_(losers))
        .values(customer_id=change.customer_id)
    )
    await engine.session.execute(
        update(timers)
        .where(timers.c.tenant_id == tenant, timers.c.customer_id.in_(losers), timers.c.kind == "step")
        .values(customer_id=change.customer_id)
    )
    await engine.session.execute(
        delete(timers).where(timers.c.tenant_id == tenant, timers.c.customer_id.in_(losers), timers.c.kind == "entry")
    )
    await engine.session.execute(
        delete(snapshots).where(snapshots.c.tenant_id == tenant, snapshots.c.customer_id.in_(losers))
    )


async def erase(engine: JourneyEngine, change: CustomerErased) -> None:
    """PIPL erasure: every instance, transition, timer and snapshot of the customer goes."""
    await engine.flush()
    tenant, customer = change.tenant_id, change.customer_id
    ids = select(instances.c.instance_id).where(instances.c.tenant_id == tenant, instances.c.customer_id == customer)
    await engine.session.execute(delete(transitions).where(transitions.c.instance_id.in_(ids)))
    await engine.session.execute(
        delete(instances).where(instances.c.tenant_id == tenant, instances.c.customer_id == customer)
    )
    await engine.session.execute(delete(timers).where(timers.c.tenant_id == tenant, timers.c.customer_id == customer))
    await engine.session.execute(
        delete(snapshots).where(snapshots.c.tenant_id == tenant, snapshots.c.customer_id == customer)
    )
    engine.forget(tenant, customer)


def one_second_after(moment: datetime) -> datetime:
    return moment + timedelta(seconds=1)
