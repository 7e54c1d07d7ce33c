"""Journey administration for one tenant: drafts, publishing versions, pause/resume/archive, playbook installs."""

import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import func, insert, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from scrm_journey.adapters.definitions import LiveJourney, default_definition, forget_live
from scrm_journey.adapters.orm import instances, journeys, snapshots, timers, transitions, versions
from scrm_journey.domain.definition import JourneyDefinition
from scrm_journey.domain.engine import HELD
from scrm_journey.domain.playbooks import DEFAULT_PLAYBOOKS, PLAYBOOKS
from scrm_journey.domain.templates import TemplateCatalogue
from scrm_journey.domain.triggers import is_dated
from scrm_journey.domain.validation import parse_definition
from scrm_journey.service.customers import schedule_entries
from scrm_journey.service.definitions import checked_definition
from scrm_journey.service.engine import RUNNING, JourneyEngine
from scrm_kit.errors import InvalidInput, NotFound


class Conflict(InvalidInput):
    """The request is well formed but the journey's current state forbids it (HTTP 409), naming the field."""

    code = "conflict"
    http_status = 409


@dataclass(frozen=True, slots=True)
class JourneyView:
    journey_id: str
    name: str
    status: str
    published_version: int | None
    playbook: str | None
    built_in: bool
    draft: dict[str, Any]
    created_at: datetime | None
    updated_at: datetime | None


def _view(row: Any) -> JourneyView:
    return JourneyView(
        row.journey_id, row.name, row.status, row.published_version, row.playbook, False, row.draft,
        row.created_at, row.updated_at,
    )  # fmt: skip


def _default_view(journey_id: str) -> JourneyView | None:
    playbook = PLAYBOOKS.get(journey_id)
    if playbook is None or not playbook.default:
        return None
    return JourneyView(
        journey_id, playbook.definition.name, "active", 1, journey_id, True, playbook.document, None, None
    )


class JourneyAdmin:
    """``templates`` (notify's catalogue for the tenant) is needed to store or publish a definition: every template
    id it sends is checked then. Reading, pausing and archiving do without."""

    def __init__(
        self, session: AsyncSession, tenant_id: str, now: datetime, templates: TemplateCatalogue | None = None
    ) -> None:
        self.session = session
        self.tenant_id = tenant_id
        self.now = now
        self.templates = templates

    async def _checked(self, document: Any) -> JourneyDefinition:
        """Graph and template ids checked (DefinitionError), or NotifyUnavailable when notify cannot say."""
        if self.templates is None:
            raise RuntimeError("storing or publishing a definition needs the tenant's template catalogue")
        return await checked_definition(document, self.templates)

    async def _row(self, journey_id: str, lock: bool = False) -> Any:
        query = select(journeys).where(journeys.c.tenant_id == self.tenant_id, journeys.c.journey_id == journey_id)
        return (await self.session.execute(query.with_for_update() if lock else query)).first()

    async def list(self) -> list[JourneyView]:
        rows = (
            await self.session.execute(
                select(journeys).where(journeys.c.tenant_id == self.tenant_id).order_by(journeys.c.created_at)
            )
        ).all()
        present = {r.journey_id for r in rows}
        defaults = [_default_view(p.name) for p in DEFAULT_PLAYBOOKS if p.name not in present]
        return [v for v in defaults if v is not None] + [_view(r) for r in rows]

    async def get(self, journey_id: str) -> JourneyView:
        row = await self._row(journey_id)
        found = _view(row) if row is not None else _default_view(journey_id)
        if found is None:
            raise NotFound(f"journey {journey_id!r} not found")
        return found

    async def create(
        self, document: Any, journey_id: str | None = None, playbook: str | None = None
    ) -> tuple[JourneyView, JourneyDefinition]:
        """Store a validated draft; nothing runs until it is published."""
        # A built-in playbook sends only notify's built-in template ids (tests/integration/test_notify_templates.py
        # proves each exists on every channel it uses), so installing one never waits on notify.
        definition = parse_definition(document) if playbook else await self._checked(document)
        journey_id = journey_id or f"jrn_{secrets.token_hex(8)}"
        stored = await self.session.execute(
            pg_insert(journeys).values(
                tenant_id=self.tenant_id, journey_id=journey_id, name=definition.name, status="draft",
                draft=document, published_version=None, playbook=playbook, created_at=self.now, updated_at=self.now,
            ).on_conflict_do_nothing().returning(journeys.c.journey_id)
        )  # fmt: skip
        if stored.first() is None:  # also when a concurrent request created it a moment ago
            raise Conflict(f"journey {journey_id!r} already exists", field="journey_id")
        return await self.get(journey_id), definition

    async def materialize(self, journey_id: str) -> Any:
        """The journey's row, creating it for a default playbook that so far ran without one."""
        row = await self._row(journey_id, lock=True)
        if row is not None:
            return row
        playbook = PLAYBOOKS.get(journey_id)
        if playbook is None or not playbook.default:
            raise NotFound(f"journey {journey_id!r} not found")
        await self.install(journey_id)
        return await self._row(journey_id, lock=True)

    async def update_draft(self, journey_id: str, document: Any) -> JourneyView:
        definition = await self._checked(document)
        row = await self.materialize(journey_id)
        if row.status == "archived":
            raise Conflict(f"journey {journey_id!r} is archived: its draft can no longer be edited", field="status")
        await self.session.execute(
            update(journeys)
            .where(journeys.c.tenant_id == self.tenant_id, journeys.c.journey_id == journey_id)
            .values(draft=document, name=definition.name, updated_at=self.now)
        )
        return await self.get(journey_id)

    async def publish(self, journey_id: str) -> JourneyView:
        """The draft becomes the newest version: new entries use it, running instances finish on theirs."""
        row = await self.materialize(journey_id)
        if row.status == "archived":
            raise Conflict(f"journey {journey_id!r} is archived: it can no longer be published", field="status")
        # Checked again: a template the draft uses may have been deleted in notify since the draft was saved.
        return await self._publish(row, await self._checked(row.draft))

    async def _publish(self, row: Any, definition: JourneyDefinition) -> JourneyView:
        journey_id = row.journey_id
        latest = (
            await self.session.execute(
                select(func.max(versions.c.version)).where(
                    versions.c.tenant_id == self.tenant_id, versions.c.journey_id == journey_id
                )
            )
        ).scalar_one()
        version = (latest or 0) + 1
        await self.session.execute(
            insert(versions).values(
                tenant_id=self.tenant_id, journey_id=journey_id, version=version, definition=row.draft,
                published_at=self.now,
            )
        )  # fmt: skip
        status = "paused" if row.status == "paused" else "active"
        await self._set(journey_id, status=status, published_version=version)
        if is_dated(definition):
            await self.schedule_all(LiveJourney(journey_id, version, definition), paused=status == "paused")
        return await self.get(journey_id)

    async def schedule_all(self, journey: LiveJourney, paused: bool = False) -> None:
        """Compute the next date-trigger entry of every customer we know."""
        engine = JourneyEngine(self.session, self.now)
        rows = await self.session.execute(
            select(snapshots.c.customer_id, snapshots.c.snapshot).where(snapshots.c.tenant_id == self.tenant_id)
        )
        for row in rows:
            schedule_entries(engine, self.tenant_id, row.customer_id, row.snapshot, [journey])
        await engine.flush()
        if paused:
            await self._pause_timers(journey.journey_id, True)

    async def _set(self, journey_id: str, **values: Any) -> None:
        forget_live(self.tenant_id)
        await self.session.execute(
            update(journeys)
            .where(journeys.c.tenant_id == self.tenant_id, journeys.c.journey_id == journey_id)
            .values(updated_at=self.now, **values)
        )

    async def _pause_timers(self, journey_id: str, paused: bool) -> None:
        await self.session.execute(
            update(timers)
            .where(timers.c.tenant_id == self.tenant_id, timers.c.journey_id == journey_id)
            .values(paused=paused)
        )

    async def pause(self, journey_id: str) -> JourneyView:
        """No new entries, and waiting instances hold where they are until resumed."""
        row = await self.materialize(journey_id)
        if row.status != "active":
            raise Conflict(
                f"journey {journey_id!r} is {row.status}: only an active journey can be paused", field="status"
            )
        await self._set(journey_id, status="paused")
        await self._pause_timers(journey_id, True)
        return await self.get(journey_id)

    async def resume(self, journey_id: str) -> JourneyView:
        row = await self.materialize(journey_id)
        if row.status != "paused":
            message = f"journey {journey_id!r} is {row.status}: only a paused journey can be resumed"
            raise Conflict(message, field="status")
        await self._set(journey_id, status="active")
        await self._pause_timers(journey_id, False)
        # Instances holding an event or task outcome that came during the pause move on it now (next scheduler tick).
        held = select(instances.c.instance_id).where(
            instances.c.tenant_id == self.tenant_id,
            instances.c.journey_id == journey_id,
            instances.c.state == "waiting",
            instances.c.context.has_key(HELD),
        )
        await self.session.execute(
            update(timers)
            .where(timers.c.tenant_id == self.tenant_id, timers.c.journey_id == journey_id)
            .where(timers.c.instance_id.in_(held), timers.c.due_at > self.now)
            .values(due_at=self.now)
        )
        return await self.get(journey_id)

    async def archive(self, journey_id: str) -> JourneyView:
        """Stop for good: no entries, running instances exit, timers go."""
        await self.materialize(journey_id)
        await self._set(journey_id, status="archived")
        ended = (
            await self.session.execute(
                update(instances)
                .where(
                    instances.c.tenant_id == self.tenant_id,
                    instances.c.journey_id == journey_id,
                    instances.c.state.in_(RUNNING),
                )
                .values(state="exited", updated_at=self.now)
                .returning(instances.c.instance_id, instances.c.current_node)
            )
        ).all()
        if ended:
            await self.session.execute(
                insert(transitions),
                [
                    {"instance_id": r.instance_id, "tenant_id": self.tenant_id, "node_id": r.current_node or "end",
                     "outcome": "journey archived", "at": self.now}
                    for r in ended
                ],
            )  # fmt: skip
        await self.session.execute(
            timers.delete().where(timers.c.tenant_id == self.tenant_id, timers.c.journey_id == journey_id)
        )
        return await self.get(journey_id)

    async def install(self, name: str) -> JourneyView:
        """Install a built-in playbook as this tenant's own journey (id = playbook name), published and running."""
        playbook = PLAYBOOKS.get(name)
        if playbook is None:
            raise NotFound(f"playbook {name!r} not found; GET /v1/playbooks lists them")
        if await self._row(name) is not None:
            raise Conflict(f"playbook {name!r} is already installed as journey {name!r}", field="name")
        await self.create(playbook.document, journey_id=name, playbook=name)
        if default_definition(name, 1) is not None:
            # A default playbook already ran as version 1: keep that version so running instances stay valid.
            await self.session.execute(
                insert(versions).values(
                    tenant_id=self.tenant_id, journey_id=name, version=1, definition=playbook.document,
                    published_at=self.now,
                )
            )  # fmt: skip
            await self._set(name, status="active", published_version=1)
            return await self.get(name)
        return await self._publish(await self._row(name, lock=True), playbook.definition)

    async def version(self, journey_id: str, version: int) -> JourneyDefinition:
        """One published version (404 when the journey or that version does not exist)."""
        await self.get(journey_id)
        try:
            return await self.definition_for(journey_id, version)
        except InvalidInput as exc:
            raise NotFound(str(exc)) from exc

    async def edit_version(self, journey_id: str, version: int) -> None:
        """Published versions never change (instances run on them): editing one is always a conflict."""
        await self.version(journey_id, version)
        raise Conflict(
            f"version {version} of journey {journey_id!r} is published and cannot change; edit the draft "
            f"(PUT /v1/journeys/{journey_id}) and publish it as a new version",
            field="version",
        )

    async def definition_for(self, journey_id: str, version: int | None) -> JourneyDefinition:
        """A published version, or the draft when ``version`` is None."""
        if version is None:
            return parse_definition((await self.get(journey_id)).draft)
        document = (
            await self.session.execute(
                select(versions.c.definition).where(
                    versions.c.tenant_id == self.tenant_id,
                    versions.c.journey_id == journey_id,
                    versions.c.version == version,
                )
            )
        ).scalar_one_or_none()
        found = JourneyDefinition.model_validate(document) if document else default_definition(journey_id, version)
        if found is None:
            raise InvalidInput(f"journey {journey_id!r} has no version {version}", field="version")
        return found
