"""Shared fixtures that start the real stack: PostgreSQL, Apache Kafka, the webhook sink and four service processes.

The stack runs on free ports in its own state folder, so it never collides with a `make run` on the same machine.
Each test creates its own tenant, so tests own their data and can run in any order.
"""

import asyncio
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.engine import make_url

from scrm_stack.launcher import REPO_ROOT, SERVICES, Stack, StackConfig


@dataclass(frozen=True)
class TenantCredentials:
    tenant_id: str
    write_key: str
    api_token: str

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}


@pytest.fixture(scope="session")
def stack() -> Iterator[Stack]:
    """The whole platform, started once per test session and stopped (by pid) at the end."""
    state = Path(tempfile.mkdtemp(prefix="e2e-", dir=REPO_ROOT / ".local" if (REPO_ROOT / ".local").exists() else None))
    config = StackConfig.on_free_ports(state)
    running = Stack(config, log=lambda line: print(line, file=sys.stderr))
    try:
        running.start_infrastructure()
        running.start_sink()
        # Sweeps run once at start and then rarely, so tests that drive time with their own clock own their data.
        running.start_services(
            {
                "SCRM_ENV": "test",
                "SCRM_LOG_LEVEL": "INFO",
                "SCRM_SEGMENT_SWEEP_SECONDS": "3600",
                "SCRM_VALUE_REFRESH_SECONDS": "86400",
            }
        )
        running.wait_ready(("sink", *SERVICES))
        yield running
    finally:
        running.stop()
        shutil.rmtree(state, ignore_errors=True)


def create_tenant(stack: Stack, name: str) -> TenantCredentials:
    """Create a tenant through the `scrm` CLI, as an operator would."""
    return TenantCredentials(**stack.create_tenant(name))


@pytest.fixture
def tenant(stack: Stack, request: pytest.FixtureRequest) -> TenantCredentials:
    return create_tenant(stack, request.node.name[:60])


@pytest.fixture(scope="session")
def db_url(stack: Stack) -> str:
    """The stack's PostgreSQL, for integration tests that drive a service's handlers in-process."""
    return stack.postgres.url


def create_database(stack: Stack, prefix: str) -> str:
    """A new database on the stack's PostgreSQL, migrated like the stack's; its URL."""
    url = make_url(stack.postgres.url)
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"

    async def create() -> None:
        connection = await asyncpg.connect(
            host=url.host, port=url.port, user=url.username, password=url.password, database=url.database
        )
        try:
            await connection.execute(f'CREATE DATABASE "{name}"')
        finally:
            await connection.close()

    asyncio.run(create())
    created = url.set(database=name).render_as_string(hide_password=False)
    subprocess.run(
        [sys.executable, "-m", "scrm_cli.main", "db", "upgrade"],
        env=stack.service_env() | {"SCRM_DB__URL": created},
        check=True,
        capture_output=True,
    )
    return created


@pytest.fixture(scope="session")
def isolated_db_url(stack: Stack) -> str:
    """A database of its own on the stack's PostgreSQL, migrated like the stack's, for in-process tests that read
    back exactly what they wrote: the running services never see it, so their relays do not publish (and delete)
    its outbox rows and no touch the stack sends for its customers comes back into it."""
    return create_database(stack, "isolated")


@pytest.fixture
def own_db_url(stack: Stack) -> str:
    """A database for this one test, for a test that runs service processes of its own against it: the stack's
    services never see it (its scheduler wakes none of the test's touches), and the test's processes see nothing
    of other tests (their relays publish no one else's outbox rows)."""
    return create_database(stack, "own")
