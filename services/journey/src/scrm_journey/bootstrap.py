"""The one place that builds the journey service's engine, producer, consumers, scheduler and relay from settings."""

import httpx

from scrm_contracts import Topic
from scrm_journey.adapters import notify
from scrm_journey.adapters.orm import outbox
from scrm_journey.service.consume import JourneyConsumer
from scrm_journey.service.timers import TimerSweep
from scrm_journey.settings import Settings
from scrm_kit.clock import Clock, SystemClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import ConsumerRunner, build_producer
from scrm_kit.logging import configure_logging
from scrm_kit.outbox import OutboxRelay
from scrm_kit.runtime import Runtime
from scrm_kit.scheduler import Periodic


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    configure_logging("journey", settings.log_level)
    clock = clock or SystemClock()
    engine = build_engine(settings.db)
    sessions = build_sessionmaker(engine)
    producer = build_producer(settings.kafka, "-journey")
    runtime = Runtime(
        name="journey", engine=engine, sessions=sessions, producer=producer, gc_threshold=settings.gc_threshold
    )
    if "consumer" not in settings.roles and "scheduler" not in settings.roles:
        return runtime
    # Whatever this process commits to the outbox, its own relay publishes at once (no poll interval to wait).
    relay = OutboxRelay(sessions, outbox, producer)
    if "consumer" in settings.roles:
        runtime.workers.append(
            ConsumerRunner(
                settings=settings.kafka,
                group=settings.consumer_group,
                topics=[Topic.PROFILE_CHANGES.value, Topic.TOUCH_RESULTS.value],
                handler=JourneyConsumer(sessions, clock, on_commit=relay.wake),
                producer=producer,
                combine_partitions=True,
                fetch_max_wait_ms=settings.consumer_fetch_max_wait_ms,
            )
        )
    if "scheduler" in settings.roles:
        sweep = TimerSweep(sessions, clock, settings.timer_batch_size, on_commit=relay.wake)
        runtime.workers.append(Periodic("journey-timers", sweep, settings.timer_interval_seconds, sweep.batch_size))
    runtime.workers.append(relay)
    return runtime


def build_notify_client(settings: Settings) -> httpx.AsyncClient:
    """The HTTP client the API asks notify's template catalogue with (``SCRM_NOTIFY_URL``)."""
    return notify.build_client(settings.notify_url, settings.notify_timeout_seconds)
