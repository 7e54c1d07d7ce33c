from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Profile service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "profile"
