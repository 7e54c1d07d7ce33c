"""The ingest schema: channel provider callback configuration per tenant and provider."""

from datetime import datetime

from sqlalchemy import DateTime, Text, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from scrm_ingest.domain.callbacks_config import CallbackConfig
from scrm_kit.db import service_metadata

SCHEMA = "ingest"


class Base(DeclarativeBase):
    metadata = service_metadata(SCHEMA)


class CallbackConfigRow(Base):
    __tablename__ = "callback_configs"

    tenant_id: Mapped[str] = mapped_column(Text, primary_key=True)
    provider: Mapped[str] = mapped_column(Text, primary_key=True)
    url_secret_sha256: Mapped[str | None] = mapped_column(Text)
    signing_secret: Mapped[str | None] = mapped_column(Text)
    token: Mapped[str | None] = mapped_column(Text)
    encoding_aes_key: Mapped[str | None] = mapped_column(Text)
    receive_id: Mapped[str | None] = mapped_column(Text)
    verification_key: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


metadata = Base.metadata
_FIELDS = ("url_secret_sha256", "signing_secret", "token", "encoding_aes_key", "receive_id", "verification_key")


class CallbackConfigStore:
    """Reads and writes callback configuration (one row per tenant and provider)."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession]) -> None:
        self._sessions = sessions

    async def load(self, tenant_id: str, provider: str) -> CallbackConfig | None:
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(CallbackConfigRow).where(
                        CallbackConfigRow.tenant_id == tenant_id, CallbackConfigRow.provider == provider
                    )
                )
            ).scalar_one_or_none()
        if row is None:
            return None
        return CallbackConfig(
            tenant_id=row.tenant_id, provider=row.provider, **{name: getattr(row, name) for name in _FIELDS}
        )

    async def save(self, config: CallbackConfig) -> None:
        """Create or replace the tenant's configuration of one provider."""
        values = {name: getattr(config, name) for name in _FIELDS}
        async with self._sessions() as session, session.begin():
            await session.execute(
                insert(CallbackConfigRow)
                .values(tenant_id=config.tenant_id, provider=config.provider, **values)
                .on_conflict_do_update(
                    index_elements=[CallbackConfigRow.tenant_id, CallbackConfigRow.provider],
                    set_={**values, "updated_at": func.now()},
                )
            )
