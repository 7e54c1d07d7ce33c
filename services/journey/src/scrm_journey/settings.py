from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Journey service settings (``SCRM_*`` environment variables)."""

    consumer_group: str = "journey"
