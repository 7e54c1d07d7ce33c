"""Channel configuration per tenant."""

import secrets
from urllib.parse import urlparse

from sqlalchemy import func
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_kit.errors import InvalidInput
from scrm_notify.adapters.orm import ChannelConfigRow


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
    async with sessions() as session, session.begin():
        await session.execute(
            insert(ChannelConfigRow)
            .values(tenant_id=tenant_id, channel="webhook", url=url, secret=secret)
            .on_conflict_do_update(
                index_elements=[ChannelConfigRow.tenant_id, ChannelConfigRow.channel],
                set_={"url": url, "secret": secret, "updated_at": func.now()},
            )
        )
    return url, secret
