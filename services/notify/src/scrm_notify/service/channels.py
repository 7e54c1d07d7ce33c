"""Channel configuration per tenant: provider settings and the secret (stored, never echoed back whole)."""

import secrets
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_kit.errors import InvalidInput
from scrm_notify.adapters.orm import ChannelConfigRow
from scrm_notify.domain.policy import CHANNELS

REQUIRED: dict[str, tuple[str, ...]] = {
    "wecom": ("corp_id",),
    "wechat_oa": ("appid",),
    "sms:aliyun": ("access_key_id", "sign_name"),
    "sms:tencent": ("secret_id", "sdk_app_id", "sign_name"),
    "email:sendgrid": ("from",),
    "email:smtp": ("host", "from"),
}
PROVIDERS = {"sms": ("aliyun", "tencent"), "email": ("sendgrid", "smtp")}


def mask(secret: str) -> str:
    """Enough to recognise a secret, never enough to use it."""
    return f"****{secret[-4:]}" if len(secret) >= 12 else "****"


def _check(channel: str, settings: dict[str, Any], secret: str | None) -> None:
    if channel not in CHANNELS or channel == "webhook":
        raise InvalidInput(
            f"unknown channel {channel!r}; one of {', '.join(c for c in CHANNELS if c != 'webhook')}", field="channel"
        )
    key = channel
    if channel in PROVIDERS:
        provider = settings.get("provider", PROVIDERS[channel][0])
        if provider not in PROVIDERS[channel]:
            raise InvalidInput(f"must be one of {', '.join(PROVIDERS[channel])}", field="settings.provider")
        key = f"{channel}:{provider}"
    for name in REQUIRED.get(key, ()):
        if not settings.get(name):
            raise InvalidInput(f"{name} is required for {key}", field=f"settings.{name}")
    if channel != "staff_task" and not (key == "email:smtp" and not settings.get("username")) and not secret:
        raise InvalidInput(f"a secret is required for {key}", field="secret")


async def _upsert(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    channel: str,
    url: str,
    secret: str,
    settings: dict[str, Any],
) -> None:
    async with sessions() as session, session.begin():
        await session.execute(
            insert(ChannelConfigRow)
            .values(tenant_id=tenant_id, channel=channel, url=url, secret=secret, settings=settings)
            .on_conflict_do_update(
                index_elements=[ChannelConfigRow.tenant_id, ChannelConfigRow.channel],
                set_={"url": url, "secret": secret, "settings": settings, "updated_at": func.now()},
            )
        )


async def configure_webhook(
    sessions: async_sessionmaker[AsyncSession], tenant_id: str, url: str, secret: str | None = None
) -> tuple[str, str]:
    """Point the tenant's webhook channel at ``url``; a signing secret is generated when none is given."""
    parsed = urlparse(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput("must be an absolute http(s) URL", field="url")
    if secret is not None and len(secret) < 16:
        raise InvalidInput("must be at least 16 characters", field="secret")
    secret = secret or f"whsec_{secrets.token_urlsafe(24)}"
    await _upsert(sessions, tenant_id, "webhook", url, secret, {})
    return url, secret


async def configure_channel(
    sessions: async_sessionmaker[AsyncSession],
    tenant_id: str,
    channel: str,
    settings: dict[str, Any],
    secret: str | None,
) -> None:
    """Store a provider channel's settings and secret (an omitted secret keeps the stored one)."""
    if secret is None:
        async with sessions() as session:
            current = await session.get(ChannelConfigRow, (tenant_id, channel))
        secret = current.secret if current else None
    _check(channel, settings, secret)
    await _upsert(sessions, tenant_id, channel, "", secret or "", settings)


async def list_channels(session: AsyncSession, tenant_id: str) -> list[ChannelConfigRow]:
    rows = await session.execute(
        select(ChannelConfigRow).where(ChannelConfigRow.tenant_id == tenant_id).order_by(ChannelConfigRow.channel)
    )
    return list(rows.scalars())
