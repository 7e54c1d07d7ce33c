from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Journey service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "journey"
    timer_interval_seconds: float = 1.0
    timer_batch_size: int = 500
