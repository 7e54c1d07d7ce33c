from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Notify service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "notify"
    webhook_timeout_seconds: float = 5.0
