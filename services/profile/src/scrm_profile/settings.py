from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Profile service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "profile"
    lifecycle_sweep_seconds: float = 5.0
    segment_sweep_seconds: float = 60.0
    value_refresh_seconds: float = 3600.0
