"""The one place that builds the notify service's engine, producer, adapters, consumers, scheduler and relay."""

import httpx
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_contracts import Topic, dlq_topic
from scrm_kit.clock import Clock, SystemClock
from scrm_kit.db import build_engine, build_sessionmaker
from scrm_kit.kafka import ConsumerRunner, build_producer
from scrm_kit.logging import configure_logging
from scrm_kit.outbox import OutboxRelay
from scrm_kit.runtime import Runtime
from scrm_kit.scheduler import Periodic
from scrm_notify.adapters.channels.base import ChannelAdapter
from scrm_notify.adapters.channels.email import EmailAdapter
from scrm_notify.adapters.channels.http import build_client
from scrm_notify.adapters.channels.sms import SmsAdapter
from scrm_notify.adapters.channels.tokens import TokenCache
from scrm_notify.adapters.channels.webhook import WebhookAdapter
from scrm_notify.adapters.channels.wechat_oa import WeChatOfficialAccountAdapter
from scrm_notify.adapters.channels.wecom import WeComAdapter
from scrm_notify.adapters.orm import outbox
from scrm_notify.service.consume import NotifyConsumer
from scrm_notify.service.directory import DirectoryConsumer
from scrm_notify.service.pipeline import Pipeline
from scrm_notify.service.tasks import TaskService
from scrm_notify.service.wecom_results import WeComResults
from scrm_notify.service.welcome import WelcomeConsumer
from scrm_notify.settings import Settings


def build_adapters(client: httpx.AsyncClient, clock: Clock, settings: Settings) -> dict[str, ChannelAdapter]:
    """One adapter per channel, pointed at the providers' base URLs from settings."""
    urls = settings.providers
    tokens = TokenCache(clock)
    adapters: list[ChannelAdapter] = [
        WebhookAdapter(client, clock),
        WeComAdapter(client, clock, urls.wecom, tokens),
        WeChatOfficialAccountAdapter(client, clock, urls.wechat, tokens),
        SmsAdapter(client, clock, urls.aliyun_sms, urls.tencent_sms),
        EmailAdapter(client, clock, urls.sendgrid, settings.delivery.http_timeout_seconds),
    ]
    return {a.channel: a for a in adapters}


def build_pipeline(
    sessions: async_sessionmaker[AsyncSession],
    client: httpx.AsyncClient,
    clock: Clock,
    settings: Settings,
    adapters: dict[str, ChannelAdapter] | None = None,
) -> Pipeline:
    adapters = adapters or build_adapters(client, clock, settings)
    return Pipeline(sessions, adapters, clock, settings.delivery, dlq_topic(settings.consumer_group), settings.wecom)


def wecom_adapter(adapters: dict[str, ChannelAdapter]) -> WeComAdapter:
    adapter = adapters["wecom"]
    assert isinstance(adapter, WeComAdapter)
    return adapter


def build_runtime(settings: Settings, clock: Clock | None = None) -> Runtime:
    configure_logging("notify", settings.log_level)
    clock = clock or SystemClock()
    engine = build_engine(settings.db)
    sessions = build_sessionmaker(engine)
    producer = build_producer(settings.kafka, "-notify")
    runtime = Runtime(
        name="notify", engine=engine, sessions=sessions, producer=producer, gc_threshold=settings.gc_threshold
    )
    client = build_client(settings.delivery.concurrency, settings.delivery.http_timeout_seconds)
    runtime.on_stop.append(client.aclose)
    adapters = build_adapters(client, clock, settings)
    pipeline = build_pipeline(sessions, client, clock, settings, adapters)
    wecom = wecom_adapter(adapters)
    if "consumer" in settings.roles:
        runtime.workers += [
            ConsumerRunner(
                settings=settings.kafka,
                group=settings.consumer_group,
                topics=[settings.requests_topic],
                handler=NotifyConsumer(pipeline),
                producer=producer,
                max_records=200,
            ),
            ConsumerRunner(
                settings=settings.kafka,
                group=settings.directory_group,
                topics=[Topic.PROFILE_CHANGES.value],
                handler=DirectoryConsumer(sessions, clock),
                producer=producer,
                dead_letter_topic=dlq_topic(settings.consumer_group),
            ),
            # Welcome codes live 20 seconds: read events.v1 directly, not behind profile, and start a new group at
            # the end of the topic (a code from before it started is worthless).
            ConsumerRunner(
                settings=settings.kafka,
                group=settings.wecom.welcome_group,
                topics=[Topic.EVENTS.value],
                handler=WelcomeConsumer(sessions, wecom, clock, settings.wecom),
                producer=producer,
                dead_letter_topic=dlq_topic(settings.consumer_group),
                fetch_max_wait_ms=50,
                auto_offset_reset="latest",
            ),
        ]
    if "scheduler" in settings.roles:
        tasks = TaskService(sessions, clock)
        runtime.workers += [
            Periodic("notify-due-touches", pipeline.resume, settings.scheduler_interval_seconds, 200),
            Periodic("notify-task-expiry", tasks.expire_due, 30.0, 200),
            Periodic(
                "notify-wecom-results",
                WeComResults(sessions, wecom, clock, settings.wecom).poll,
                settings.wecom.result_poll_interval_seconds,
                settings.wecom.result_poll_batch,
            ),
        ]
    if "consumer" in settings.roles or "scheduler" in settings.roles:
        runtime.workers.append(OutboxRelay(sessions, outbox, producer))
    return runtime
