from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Journey service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "journey"
    # The broker answers a fetch at once when records are there; this bounds the wait on quiet partitions, which
    # otherwise holds back the next records of busy ones (see ConsumerRunner). Small: event -> touch latency.
    consumer_fetch_max_wait_ms: int = 20
    timer_interval_seconds: float = 1.0
    timer_batch_size: int = 500
    # notify's API, asked whether the template ids of a definition exist for the tenant (adapters.notify): the
    # local stack's notify by default; compose and Helm point it at the notify API service.
    notify_url: str = "http://127.0.0.1:8004"
    notify_timeout_seconds: float = 5.0
