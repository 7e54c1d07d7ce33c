"""Loading journey definitions: published versions are immutable, so they are cached by (tenant, id, version)."""

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_journey.adapters.orm import journeys, versions
from scrm_journey.domain.definition import JourneyDefinition
from scrm_journey.domain.playbooks import DEFAULT_PLAYBOOKS, PLAYBOOKS

_CACHE: dict[tuple[str, str, int], JourneyDefinition] = {}
_CACHE_LIMIT = 50_000


@dataclass(frozen=True, slots=True)
class LiveJourney:
    """A journey taking new entries: its id, the newest published version and that version's definition."""

    journey_id: str
    version: int
    definition: JourneyDefinition


def default_definition(journey_id: str, version: int) -> JourneyDefinition | None:
    """A default playbook runs as version 1 for every tenant that has no journey row of that id."""
    playbook = PLAYBOOKS.get(journey_id)
    if playbook is None or not playbook.default or version != 1:
        return None
    return playbook.definition


async def definition(session: AsyncSession, tenant_id: str, journey_id: str, version: int) -> JourneyDefinition | None:
    key = (tenant_id, journey_id, version)
    found = _CACHE.get(key)
    if found is not None:
        return found
    document = (
        await session.execute(
            select(versions.c.definition).where(
                versions.c.tenant_id == tenant_id, versions.c.journey_id == journey_id, versions.c.version == version
            )
        )
    ).scalar_one_or_none()
    parsed = JourneyDefinition.model_validate(document) if document is not None else None
    parsed = parsed or default_definition(journey_id, version)
    if parsed is not None:
        if len(_CACHE) > _CACHE_LIMIT:
            _CACHE.clear()
        _CACHE[key] = parsed
    return parsed


@dataclass(frozen=True, slots=True)
class TenantJourneys:
    """What the hot path needs per tenant: journeys taking entries, and paused journeys (their instances hold)."""

    live: list[LiveJourney]
    paused: frozenset[str]


_LIVE: dict[str, tuple[float, TenantJourneys]] = {}
LIVE_SECONDS = 2.0  # how long a consumer may keep entering with the previous list after a publish elsewhere


def forget_live(tenant_id: str) -> None:
    """A journey of the tenant changed in this process: the next lookup reads the table."""
    _LIVE.pop(tenant_id, None)


async def tenant_journeys(session: AsyncSession, tenant_id: str) -> TenantJourneys:
    """Live and paused journeys, cached for ``LIVE_SECONDS`` per tenant (the hot path reads it per batch)."""
    cached = _LIVE.get(tenant_id)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1]
    found = await _read_live(session, tenant_id)
    if len(_LIVE) > 10_000:
        _LIVE.clear()
    _LIVE[tenant_id] = (time.monotonic() + LIVE_SECONDS, found)
    return found


async def live_journeys(session: AsyncSession, tenant_id: str) -> list[LiveJourney]:
    """Journeys that take new entries now (cached like ``tenant_journeys``)."""
    return (await tenant_journeys(session, tenant_id)).live


async def _read_live(session: AsyncSession, tenant_id: str) -> TenantJourneys:
    """Active journeys with a published version, plus untouched default playbooks; and the paused ones."""
    rows = (
        await session.execute(
            select(journeys.c.journey_id, journeys.c.status, journeys.c.published_version).where(
                journeys.c.tenant_id == tenant_id
            )
        )
    ).all()
    live: list[LiveJourney] = []
    for row in rows:
        if row.status == "active" and row.published_version is not None:
            found = await definition(session, tenant_id, row.journey_id, row.published_version)
            if found is not None:
                live.append(LiveJourney(row.journey_id, row.published_version, found))
    present = {row.journey_id for row in rows}
    live += [LiveJourney(p.name, 1, p.definition) for p in DEFAULT_PLAYBOOKS if p.name not in present]
    return TenantJourneys(live, frozenset(row.journey_id for row in rows if row.status == "paused"))
