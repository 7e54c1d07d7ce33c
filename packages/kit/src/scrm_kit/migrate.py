"""Alembic glue: every service's ``migrations/env.py`` calls ``run_env`` with its MetaData."""

import asyncio
from pathlib import Path

from alembic import command, context
from alembic.config import Config
from sqlalchemy import MetaData, pool, text
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import create_async_engine


def alembic_config(script_location: Path, db_url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(script_location))
    config.set_main_option("sqlalchemy.url", db_url.replace("%", "%%"))
    return config


def upgrade(script_location: Path, db_url: str, revision: str = "head") -> None:
    """Bring one schema's history up to ``revision``."""
    command.upgrade(alembic_config(script_location, db_url), revision)


def run_env(metadata: MetaData) -> None:
    """Body of an ``env.py``: online migrations over asyncpg, version table inside the service's schema."""
    schema = metadata.schema
    assert schema, "service MetaData must name its schema"
    url = context.config.get_main_option("sqlalchemy.url")
    assert url

    def _migrate(connection: Connection) -> None:
        connection.execute(text(f'CREATE SCHEMA IF NOT EXISTS "{schema}"'))
        context.configure(
            connection=connection,
            target_metadata=metadata,
            version_table_schema=schema,
            include_schemas=True,
        )
        with context.begin_transaction():
            context.run_migrations()

    async def _run() -> None:
        engine = create_async_engine(url, poolclass=pool.NullPool)
        async with engine.begin() as connection:
            await connection.run_sync(_migrate)
        await engine.dispose()

    asyncio.run(_run())
