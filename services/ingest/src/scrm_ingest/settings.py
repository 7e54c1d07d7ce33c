from pydantic import Field

from scrm_kit.settings import ServiceSettings


class Settings(ServiceSettings):
    """Ingest service settings (``SCRM_*`` environment variables)."""

    max_event_bytes: int = 32 * 1024
    max_batch_bytes: int = 500 * 1024
    kafka_ack_timeout_seconds: float = 10.0
    rate_limit_events_per_second: float = Field(
        default=5000.0, gt=0, description="Per tenant and replica, unless the tenant has its own limit"
    )
    rate_limit_burst_seconds: float = Field(default=2.0, gt=0, description="Burst allowance, in seconds of the rate")
