from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

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
    callback_public_url: str | None = Field(
        default=None,
        description="Base URL providers reach ingest at (e.g. https://ingest.example.com); default: the request's",
    )
    sms_unsubscribe_keywords: Annotated[list[str], NoDecode] = Field(
        default_factory=lambda: ["TD", "T", "N", "R", "退订", "回T退订", "回TD退订", "拒收", "取消"],
        description="An SMS reply that is one of these (case and punctuation ignored) unsubscribes the sender",
    )
    callback_signature_tolerance_seconds: int = 300
    default_phone_region: str = "CN"

    @field_validator("sms_unsubscribe_keywords", mode="before")
    @classmethod
    def _split_keywords(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value
