from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Ingest service settings (``SCRM_*`` environment variables)."""

    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    kafka_ack_timeout_seconds: float = 10.0
