"""Create the platform's topics (idempotently) through the Kafka admin API."""

import asyncio
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from scrm_contracts import Topic, dlq_topic

logger = logging.getLogger(__name__)

CONSUMER_GROUPS = ("profile", "journey", "notify")


def platform_topics(partitions: int = 8, replication: int = 1) -> list[NewTopic]:
    """Every topic the platform needs: the four main topics and one dead-letter topic per consumer group."""
    names = [t.value for t in Topic] + [dlq_topic(g) for g in CONSUMER_GROUPS]
    return [NewTopic(name, num_partitions=partitions, replication_factor=replication) for name in names]


async def ensure_topics(bootstrap: str, partitions: int = 8, replication: int = 1, timeout: float = 60) -> list[str]:
    """Create missing topics; return the names created now."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=10_000)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            missing = [t for t in platform_topics(partitions, replication) if t.name not in existing]
            if missing:
                try:
                    await admin.create_topics(missing)
                except TopicAlreadyExistsError:
                    pass
            return [t.name for t in missing]
        except Exception:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.5)
        finally:
            await admin.close()
