"""Publish accepted events to ``events.v1`` and answer only after Kafka acknowledged every one of them.

The same (tenant, messageId) arriving while an earlier copy is still in flight waits for that copy instead of
publishing twice; consumers dedupe for good by ``event_id``.
"""

import asyncio
from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from scrm_contracts import Topic, TrackedEvent, record_key
from scrm_kit.errors import RetryableError
from scrm_kit.kafka import SharedBatches


class EventPublisher:
    def __init__(self, producer: AIOKafkaProducer, ack_timeout: float = 10.0) -> None:
        self._ack_timeout = ack_timeout
        self._in_flight: dict[tuple[str, str], asyncio.Future[None]] = {}
        # One for the process: concurrent requests share per-partition batches (and the key-hash cache).
        self._batches = SharedBatches(producer, Topic.EVENTS.value)

    async def publish(self, events: Sequence[TrackedEvent]) -> None:
        """Send every event and wait for the acks; raise ``RetryableError`` if Kafka cannot take them."""
        waits: list[asyncio.Future[None]] = []
        owned: list[tuple[tuple[str, str], asyncio.Future[None]]] = []
        sends: list[TrackedEvent] = []
        for event in events:
            key = (event.tenant_id, event.event_id)
            pending = self._in_flight.get(key)
            if pending is not None:
                waits.append(pending)
                continue
            marker: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._in_flight[key] = marker
            owned.append((key, marker))
            sends.append(event)
        try:
            await asyncio.wait_for(self._send_all(sends), timeout=self._ack_timeout)
            for _, marker in owned:
                marker.set_result(None)
        except Exception as exc:
            error = RetryableError(f"event log unavailable: {type(exc).__name__}")
            for _, marker in owned:
                if not marker.done():
                    marker.set_exception(error)
                    marker.exception()  # mark retrieved: waiters re-raise it themselves
            raise error from exc
        finally:
            for key, _ in owned:
                self._in_flight.pop(key, None)
        if waits:
            await asyncio.gather(*waits)

    async def _send_all(self, events: Sequence[TrackedEvent]) -> None:
        # ``publish`` bounds the wait for the acknowledgements.
        await self._batches.send((record_key(event.tenant_id, event.customer_key), event.to_wire()) for event in events)
