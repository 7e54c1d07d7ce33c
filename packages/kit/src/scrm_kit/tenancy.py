"""Tenants and their credentials (platform-level, shared by every service through the ``tenancy`` schema).

Write keys (ingest, HTTP Basic user) and API tokens (other services, Bearer) are random 32-byte secrets; only
their SHA-256 digests are stored.
"""

import hashlib
import secrets
import time
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import Column, DateTime, Integer, MetaData, Table, Text, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from scrm_kit.db import NAMING_CONVENTION
from scrm_kit.errors import ScrmError

SCHEMA = "tenancy"
metadata = MetaData(schema=SCHEMA, naming_convention=NAMING_CONVENTION)

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("write_key_sha256", Text, nullable=False, unique=True),
    Column("api_token_sha256", Text, nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False, server_default=func.now()),
    Column("events_per_second", Integer, nullable=True),
)


class Unauthorized(ScrmError):
    code = "unauthorized"


@dataclass(frozen=True, slots=True)
class Tenant:
    tenant_id: str
    name: str
    events_per_second: int | None = None  # ingest rate limit; None: the service default


@dataclass(frozen=True, slots=True)
class NewTenant:
    tenant_id: str
    name: str
    write_key: str
    api_token: str


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


class TenantDirectory:
    """Looks tenants up by credential, with a short cache so auth costs no query on the hot path."""

    def __init__(self, sessions: async_sessionmaker[AsyncSession], cache_seconds: float = 30.0) -> None:
        self._sessions = sessions
        self._cache_seconds = cache_seconds
        self._cache: dict[tuple[str, str], tuple[float, Tenant | None]] = {}

    async def create(self, name: str) -> NewTenant:
        """Create a tenant with fresh credentials; the secrets are returned once and never stored."""
        if not name.strip():
            raise ValueError("name must not be empty")
        created = NewTenant(
            tenant_id=f"ten_{secrets.token_hex(8)}",
            name=name.strip(),
            write_key=f"wk_{secrets.token_urlsafe(24)}",
            api_token=f"at_{secrets.token_urlsafe(32)}",
        )
        async with self._sessions() as session, session.begin():
            await session.execute(
                tenants.insert().values(
                    tenant_id=created.tenant_id,
                    name=created.name,
                    write_key_sha256=digest(created.write_key),
                    api_token_sha256=digest(created.api_token),
                )
            )
        return created

    async def set_rate_limit(self, tenant_id: str, events_per_second: int | None) -> bool:
        """Set (or with None clear) a tenant's ingest limit; False if there is no such tenant. Ingest replicas
        pick it up within the credential cache time."""
        if events_per_second is not None and events_per_second < 1:
            raise ValueError("events per second must be at least 1")
        async with self._sessions() as session, session.begin():
            result = await session.execute(
                update(tenants).where(tenants.c.tenant_id == tenant_id).values(events_per_second=events_per_second)
            )
        return bool(result.rowcount)  # type: ignore[attr-defined]

    async def by_write_key(self, write_key: str) -> Tenant | None:
        return await self._lookup("write_key_sha256", write_key)

    async def by_api_token(self, api_token: str) -> Tenant | None:
        return await self._lookup("api_token_sha256", api_token)

    async def _lookup(self, column: str, secret: str) -> Tenant | None:
        key = (column, digest(secret))
        now = time.monotonic()
        cached = self._cache.get(key)
        if cached is not None and cached[0] > now:
            return cached[1]
        async with self._sessions() as session:
            row = (
                await session.execute(
                    select(tenants.c.tenant_id, tenants.c.name, tenants.c.events_per_second).where(
                        tenants.c[column] == key[1]
                    )
                )
            ).first()
        tenant = Tenant(row.tenant_id, row.name, row.events_per_second) if row else None
        # Unknown credentials are cached briefly too, so a flood of bad keys cannot hammer the database.
        self._cache[key] = (now + (self._cache_seconds if tenant else 2.0), tenant)
        if len(self._cache) > 10_000:
            self._cache.clear()
        return tenant


_bearer = HTTPBearer(auto_error=False, description="The tenant's API token")


async def require_api_tenant(
    request: Request, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> Tenant:
    """Authenticate ``Authorization: Bearer <api_token>``; every query is then scoped to this tenant."""
    if credentials is None or not credentials.credentials:
        raise Unauthorized("missing bearer token: send 'Authorization: Bearer <api_token>'")
    directory: TenantDirectory = request.app.state.tenants
    tenant = await directory.by_api_token(credentials.credentials)
    if tenant is None:
        raise Unauthorized("unknown API token")
    return tenant


TenantDep = Annotated[Tenant, Depends(require_api_tenant)]
