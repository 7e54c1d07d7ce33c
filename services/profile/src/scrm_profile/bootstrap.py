"""The one place that builds the profile service's engine, producer, consumers, sweeps and relay from settings."""

from scrm_contracts import Topic
from scrm_kit.clock import Clock, SystemClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import ConsumerRunner, build_producer
from scrm_kit.logging import configure_logging
from scrm_kit.outbox import OutboxRelay
from scrm_kit.runtime import Runtime
from scrm_kit.scheduler import Periodic
from scrm_profile.adapters.orm import outbox
from scrm_profile.service.consume import ProfileConsumer
from scrm_profile.service.jobs import LifecycleSweep, SegmentSweep, ValueRefresh
from scrm_profile.settings import Settings


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    configure_logging("profile", settings.log_level)
    clock = clock or SystemClock()
    engine = build_engine(settings.db)
    sessions = build_sessionmaker(engine)
    producer = build_producer(settings.kafka, "-profile")
    runtime = Runtime(
        name="profile", engine=engine, sessions=sessions, producer=producer, gc_threshold=settings.gc_threshold
    )
    if "consumer" in settings.roles:
        runtime.workers.append(
            ConsumerRunner(
                settings=settings.kafka,
                group=settings.consumer_group,
                topics=[Topic.EVENTS.value, Topic.TOUCH_RESULTS.value],
                handler=ProfileConsumer(sessions, clock),
                producer=producer,
                partitions_in_flight=settings.consumer_partitions_in_flight,
            )
        )
    if "scheduler" in settings.roles:
        sweep = LifecycleSweep(sessions, clock)
        runtime.workers += [
            Periodic("lifecycle-sweep", sweep, settings.lifecycle_sweep_seconds, sweep.batch_size),
            Periodic("segment-sweep", SegmentSweep(sessions, clock), settings.segment_sweep_seconds),
            Periodic("value-refresh", ValueRefresh(sessions, clock), settings.value_refresh_seconds),
        ]
    if "consumer" in settings.roles or "scheduler" in settings.roles:
        runtime.workers.append(OutboxRelay(sessions, outbox, producer))
    return runtime
