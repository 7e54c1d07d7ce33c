"""The one place that builds the ingest service's engine (tenancy lookups) and producer from settings."""

from scrm_ingest.service.publish import EventPublisher
from scrm_ingest.settings import Settings
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import build_producer
from scrm_kit.logging import configure_logging
from scrm_kit.runtime import Runtime


def build_runtime(settings: Settings) -> tuple[Runtime, EventPublisher]:
    configure_logging("ingest", settings.log_level)
    engine = build_engine(settings.db)
    producer = build_producer(settings.kafka, "-ingest")
    runtime = Runtime(
        name="ingest",
        engine=engine,
        sessions=build_sessionmaker(engine),
        producer=producer,
        gc_threshold=settings.gc_threshold,
    )
    return runtime, EventPublisher(producer, settings.kafka_ack_timeout_seconds)
