"""Shared fixtures that start the real stack: PostgreSQL, Apache Kafka, the webhook sink and four service processes.

The stack runs on free ports in its own state folder, so it never collides with a `make run` on the same machine.
Each test creates its own tenant, so tests own their data and can run in any order.
"""

import json
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from scrm_stack.launcher import REPO_ROOT, SERVICES, Stack, StackConfig


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
    config = StackConfig(
        state_dir=state,
        pg_port=free_port(),
        kafka_port=free_port(),
        controller_port=free_port(),
        sink_port=free_port(),
        service_ports={name: free_port() for name in SERVICES},
    )
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
    created = subprocess.run(
        [sys.executable, "-m", "scrm_cli.main", "tenant", "create", "--name", name, "--json"],
        env=stack.service_env(),
        check=True,
        capture_output=True,
        text=True,
    )
    return TenantCredentials(**json.loads(created.stdout))


@pytest.fixture
def tenant(stack: Stack, request: pytest.FixtureRequest) -> TenantCredentials:
    return create_tenant(stack, request.node.name[:60])


@pytest.fixture(scope="session")
def db_url(stack: Stack) -> str:
    """The stack's PostgreSQL, for integration tests that drive a service's handlers in-process."""
    return stack.postgres.url
