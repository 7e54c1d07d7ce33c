"""The one place that builds the notify service's engine, producer, adapters, consumers and relay."""

import httpx

from scrm_contracts import Topic
from scrm_kit.clock import Clock, SystemClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import ConsumerRunner, build_producer
from scrm_kit.logging import configure_logging
from scrm_kit.outbox import OutboxRelay
from scrm_kit.runtime import Runtime
from scrm_notify.adapters.orm import outbox
from scrm_notify.adapters.webhook import WebhookAdapter
from scrm_notify.service.consume import NotifyConsumer
from scrm_notify.settings import Settings


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    configure_logging("notify", settings.log_level)
    engine = build_engine(settings.db)
    sessions = build_sessionmaker(engine)
    producer = build_producer(settings.kafka, "-notify")
    runtime = Runtime(name="notify", engine=engine, sessions=sessions, producer=producer)
    if "consumer" in settings.roles:
        client = httpx.AsyncClient(timeout=settings.webhook_timeout_seconds)
        runtime.workers.append(
            ConsumerRunner(
                settings=settings.kafka,
                group=settings.consumer_group,
                topics=[Topic.TOUCH_REQUESTS.value],
                handler=NotifyConsumer(sessions, WebhookAdapter(client), clock or SystemClock()),
                producer=producer,
                max_records=100,
            )
        )
        runtime.on_stop.append(client.aclose)
    if "consumer" in settings.roles or "scheduler" in settings.roles:
        runtime.workers.append(OutboxRelay(sessions, outbox, producer))
    return runtime
