"""The staff task queue: store-staff apps list their tasks, claim one, and complete it with an outcome.
Completion and expiry publish a TouchResult (``completed`` with ``outcome``, ``expired``)."""

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import TouchStatus
from scrm_kit.clock import Clock
from scrm_kit.errors import InvalidInput, NotFound
from scrm_notify.adapters.orm import StaffTaskRow, TouchRow
from scrm_notify.service import results

OPEN = ("open", "claimed")


class Conflict(InvalidInput):
    code = "conflict"


async def _locked(session: AsyncSession, tenant_id: str, task_id: str) -> StaffTaskRow:
    task = (
        await session.execute(
            select(StaffTaskRow)
            .where(StaffTaskRow.tenant_id == tenant_id, StaffTaskRow.task_id == task_id)
            .with_for_update()
        )
    ).scalar_one_or_none()
    if task is None:
        raise NotFound(f"no task {task_id!r}")
    return task


class TaskService:
    def __init__(self, sessions: async_sessionmaker[AsyncSession], clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    async def claim(self, tenant_id: str, task_id: str, staff_id: str) -> StaffTaskRow:
        """Take the task; a second claim by someone else is refused, by the same staff member is a no-op."""
        async with self._sessions() as session, session.begin():
            task = await _locked(session, tenant_id, task_id)
            if task.status == "claimed" and task.claimed_by == staff_id:
                return task
            if task.status != "open":
                raise Conflict(
                    f"task is {task.status}" + (f" by {task.claimed_by}" if task.claimed_by else ""), field="task_id"
                )
            task.status, task.claimed_by, task.updated_at = "claimed", staff_id, self._clock.now()
            return task

    async def complete(self, tenant_id: str, task_id: str, outcome: str, note: str | None) -> StaffTaskRow:
        """Close the task with what happened; the same completion again changes nothing."""
        async with self._sessions() as session, session.begin():
            task = await _locked(session, tenant_id, task_id)
            if task.status == "completed" and task.outcome == outcome:
                return task
            if task.status not in OPEN:
                raise Conflict(f"task is {task.status}", field="task_id")
            now = self._clock.now()
            task.status, task.outcome, task.note, task.updated_at = "completed", outcome, note, now
            await self._settle_touch(session, task, TouchStatus.COMPLETED, now, outcome)
            return task

    async def expire_due(self, batch_size: int = 200) -> int:
        """Expire open tasks past their due time (SKIP LOCKED: replicas share the sweep)."""
        now = self._clock.now()
        async with self._sessions() as session, session.begin():
            due = (
                (
                    await session.execute(
                        select(StaffTaskRow)
                        .where(StaffTaskRow.status.in_(OPEN), StaffTaskRow.due_at <= now)
                        .limit(batch_size)
                        .with_for_update(skip_locked=True)
                    )
                )
                .scalars()
                .all()
            )
            for task in due:
                task.status, task.updated_at = "expired", now
                await self._settle_touch(session, task, TouchStatus.EXPIRED, now, None)
            return len(due)

    async def _settle_touch(
        self, session: AsyncSession, task: StaffTaskRow, status: TouchStatus, now: datetime, outcome: str | None
    ) -> None:
        touch = await session.get(TouchRow, (task.tenant_id, task.touch_key), with_for_update=True)
        if touch is None:
            return
        touch.status, touch.updated_at = status.value, now
        await results.publish(session, touch, status, now, outcome=outcome)
