"""Periodic background work (timers, sweeps, retries) that any number of replicas can run side by side.

The tick function claims its rows with ``FOR UPDATE SKIP LOCKED`` and returns how many it handled; a full batch
means more is due, so the loop runs again at once instead of sleeping.
"""

import asyncio
import logging
from collections.abc import Awaitable, Callable

logger = logging.getLogger(__name__)


class Periodic:
    """Calls ``tick`` every ``interval`` seconds (immediately again while it reports a full batch)."""

    def __init__(
        self, name: str, tick: Callable[[], Awaitable[int]], interval: float = 1.0, batch_size: int = 500
    ) -> None:
        self.name = name
        self._tick = tick
        self._interval = interval
        self._batch_size = batch_size
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        self._stopping.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(self._task, timeout=20)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                handled = await self._tick()
            except Exception:
                logger.exception("periodic task failed; retrying", extra={"task": self.name})
                handled = 0
            if handled >= self._batch_size:
                continue
            try:
                await asyncio.wait_for(self._stopping.wait(), timeout=self._interval)
            except TimeoutError:
                pass
