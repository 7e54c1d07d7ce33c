"""Prometheus metrics the kit records for every service."""

from prometheus_client import Counter, Gauge, Histogram

CONSUMED = Counter("scrm_consumer_records_total", "Records handled by a consumer group", ["group", "topic", "outcome"])
CONSUMER_LAG = Gauge(
    "scrm_consumer_lag", "Records behind the partition's high watermark", ["group", "topic", "partition"]
)
BATCH_SECONDS = Histogram("scrm_consumer_batch_seconds", "Time to apply and commit one batch", ["group"])
OUTBOX_PUBLISHED = Counter("scrm_outbox_published_total", "Outbox records relayed to Kafka", ["topic"])
OUTBOX_PENDING = Gauge("scrm_outbox_pending", "Outbox records waiting to be relayed (last seen)")
