"""Settings shared by every service: environment variables with the ``SCRM_`` prefix, groups split by ``__``.

Example: ``SCRM_DB__URL``, ``SCRM_KAFKA__BOOTSTRAP_SERVERS``, ``SCRM_ROLES=api,consumer,scheduler``.
"""

from typing import Annotated, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

Role = Literal["api", "consumer", "scheduler"]
PLACEHOLDER_SECRETS = {"", "change-me", "changeme", "local-dev-secret"}


class DbSettings(BaseModel):
    url: SecretStr = SecretStr("postgresql+asyncpg://postgres@127.0.0.1:55432/scrm")
    pool_size: int = 10
    max_overflow: int = 10
    # A round trip per checkout to catch connections a Postgres restart broke. Off by default: a broken
    # connection is dropped from the pool when it fails (consumers retry the batch; an API answers 503 once).
    pre_ping: bool = False
    echo: bool = False


class KafkaSettings(BaseModel):
    bootstrap_servers: str = "127.0.0.1:59092"
    client_id: str = "scrm"
    enable_idempotence: bool = Field(default=True, description="Off only for brokers without producer ids (Tansu)")
    # No wait to fill a batch: a single tracked event is answered as soon as Kafka has it (bulk paths send whole
    # batches anyway, and records that arrive while a request is in flight still share the next one).
    linger_ms: int = 0
    max_batch_size: int = 500
    session_timeout_ms: int = 10_000
    request_timeout_ms: int = 15_000


class ServiceSettings(BaseSettings):
    """Base of each service's ``Settings``; built once in bootstrap and passed down."""

    model_config = SettingsConfigDict(env_prefix="SCRM_", env_nested_delimiter="__", extra="ignore")

    env: Literal["local", "test", "production"] = "local"
    log_level: str = "INFO"
    roles: Annotated[list[Role], NoDecode] = Field(default_factory=lambda: ["api", "consumer", "scheduler"])
    db: DbSettings = Field(default_factory=DbSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    # Allocations between young-generation garbage collections once the service has started (Python's default
    # is 700; a request that parses a batch allocates thousands of objects). 0 keeps Python's defaults.
    gc_threshold: int = Field(default=50_000, ge=0)

    @field_validator("roles", mode="before")
    @classmethod
    def _split_roles(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    def refuse_placeholder(self, name: str, secret: SecretStr) -> None:
        """Raise if a secret is still a placeholder outside local and test mode."""
        if self.env == "production" and secret.get_secret_value() in PLACEHOLDER_SECRETS:
            raise ValueError(f"{name} must be set to a real secret when SCRM_ENV=production")
