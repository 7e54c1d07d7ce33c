"""The local stack: PostgreSQL, Kafka, migrations, topics, a demo tenant, a webhook sink and the four services,
each a separate process on one machine with no Docker. Used by ``make run`` and by the end-to-end tests.
"""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from scrm_stack.kafka import KafkaBroker, port_open
from scrm_stack.postgres import PostgresServer
from scrm_stack.topics import ensure_topics

SERVICES = ("ingest", "profile", "journey", "notify")
REPO_ROOT = Path(__file__).resolve().parents[4]


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env_int(name: str, default: int) -> int:
    return int(os.environ.get(name, default))


@dataclass
class StackConfig:
    state_dir: Path = field(default_factory=lambda: Path(os.environ.get("SCRM_STATE_DIR", REPO_ROOT / ".local")))
    cache_dir: Path = field(default_factory=lambda: Path(os.environ.get("SCRM_CACHE_DIR", REPO_ROOT / ".cache")))
    pg_port: int = field(default_factory=lambda: _env_int("SCRM_PG_PORT", 55432))
    kafka_port: int = field(default_factory=lambda: _env_int("SCRM_KAFKA_PORT", 59092))
    controller_port: int = field(default_factory=lambda: _env_int("SCRM_KAFKA_CONTROLLER_PORT", 59093))
    sink_port: int = field(default_factory=lambda: _env_int("SCRM_SINK_PORT", 8009))
    service_ports: dict[str, int] = field(
        default_factory=lambda: {
            name: _env_int(f"SCRM_{name.upper()}_PORT", 8001 + i) for i, name in enumerate(SERVICES)
        }
    )
    sink_secret: str = "whsec_local_demo_sink_secret"

    @classmethod
    def on_free_ports(cls, state_dir: Path, services: Iterable[str] = SERVICES) -> "StackConfig":
        """A stack in ``state_dir`` on free ports, beside any ``make run``: for tests and benchmarks. Only the
        named services (replicas such as ``ingest.2`` too) get a port."""
        return cls(
            state_dir=state_dir,
            pg_port=free_port(),
            kafka_port=free_port(),
            controller_port=free_port(),
            sink_port=free_port(),
            service_ports={name: free_port() for name in services},
        )


def _get_status(url: str, timeout: float = 1.0) -> int:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - loopback only
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code
    except OSError:
        return 0


class Stack:
    """Starts what is not running yet, remembers what it started, and stops exactly that."""

    def __init__(self, config: StackConfig | None = None, log=print) -> None:  # type: ignore[no-untyped-def]
        self.config = config or StackConfig()
        self.log = log
        self.postgres = PostgresServer(self.config.state_dir / "postgres" / "data", self.config.pg_port)
        self.kafka = KafkaBroker(
            self.config.state_dir / "kafka", self.config.cache_dir, self.config.kafka_port, self.config.controller_port
        )
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._started_postgres = False
        self._started_kafka = False

    @property
    def log_dir(self) -> Path:
        return self.config.state_dir / "logs"

    def url(self, service: str) -> str:
        port = self.config.sink_port if service == "sink" else self.config.service_ports[service]
        return f"http://127.0.0.1:{port}"

    def service_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(
            {
                "SCRM_DB__URL": self.postgres.url,
                "SCRM_KAFKA__BOOTSTRAP_SERVERS": self.kafka.bootstrap,
                "SCRM_KAFKA__ENABLE_IDEMPOTENCE": "true" if self.kafka.supports_idempotence else "false",
            }
        )
        if "notify" in self.config.service_ports:
            # journey checks template ids against notify's API (always this stack's, on whatever port it has)
            env["SCRM_NOTIFY_URL"] = self.url("notify")
        return env

    def create_tenant(self, name: str) -> dict[str, str]:
        """Create a tenant through the ``scrm`` CLI, as an operator would: its id, write key and API token."""
        created = subprocess.run(
            [sys.executable, "-m", "scrm_cli.main", "tenant", "create", "--name", name, "--json"],
            env=self.service_env(),
            check=True,
            capture_output=True,
            text=True,
        )
        return dict(json.loads(created.stdout))

    def all_ready(self) -> bool:
        return all(_get_status(f"{self.url(s)}/readyz") == 200 for s in SERVICES)

    def start_infrastructure(self) -> None:
        started = time.monotonic()
        self._started_postgres = self.postgres.start()
        self.log(f"postgres   {self.postgres.url}  ({'started' if self._started_postgres else 'reused'})")
        self._started_kafka = self.kafka.start()
        self.log(
            f"kafka      {self.kafka.bootstrap}  ({self.kafka.kind}, "
            f"{'started' if self._started_kafka else 'reused'}) in {time.monotonic() - started:.1f}s"
        )
        self.migrate()
        created = asyncio.run(ensure_topics(self.kafka.bootstrap))
        self.log(f"topics     {'created ' + ', '.join(created) if created else 'present'}")

    def migrate(self) -> None:
        subprocess.run(
            [sys.executable, "-m", "scrm_cli.main", "db", "upgrade"],
            env=self.service_env(),
            check=True,
            capture_output=True,
        )

    def start_sink(self) -> None:
        env = self.service_env() | {"SCRM_SINK_SECRET": self.config.sink_secret}
        self._spawn(
            "sink",
            [
                "uvicorn",
                "--factory",
                "scrm_stack.webhook_sink:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.config.sink_port),
                "--log-level",
                "warning",
            ],
            env,
        )

    def start_services(self, extra_env: dict[str, str] | None = None) -> None:
        env = self.service_env() | (extra_env or {})
        for name in SERVICES:
            self.start_service(name, env)

    def start_service(self, name: str, env: dict[str, str] | None = None) -> None:
        """Start one service process; ``name`` may name a further replica, as ``ingest.2`` (its own port)."""
        port = self.config.service_ports[name]
        if port_open(port):
            raise RuntimeError(f"port {port} for {name} is already taken; set SCRM_{name.upper()}_PORT")
        self._spawn(
            name,
            [
                "uvicorn",
                "--factory",
                f"scrm_{name.split('.')[0]}.entrypoints.api:app",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--no-access-log",
                "--timeout-graceful-shutdown",
                "20",
            ],
            env or self.service_env(),
        )

    def _spawn(self, name: str, args: list[str], env: dict[str, str]) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_file = (self.log_dir / f"{name}.log").open("ab")
        self.processes[name] = subprocess.Popen(
            [sys.executable, "-m", *args],
            env=env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, names: tuple[str, ...] = SERVICES, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        pending = list(names)
        while pending:
            for name in list(pending):
                process = self.processes.get(name)
                if process is not None and process.poll() is not None:
                    raise RuntimeError(f"{name} exited with {process.returncode}; see {self.log_dir / name}.log")
                path = "/healthz" if name == "sink" else "/readyz"
                if _get_status(f"{self.url(name)}{path}") == 200:
                    pending.remove(name)
            if pending and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout}s: {', '.join(pending)}; logs in {self.log_dir}")
            time.sleep(0.2)

    def stop_process(self, name: str, sig: int = signal.SIGTERM, timeout: float = 25) -> None:
        process = self.processes.pop(name, None)
        if process is None or process.poll() is not None:
            return
        process.send_signal(sig)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def stop(self) -> None:
        """Stop every process this stack started, by pid: services first, then Kafka and Postgres."""
        for name in list(self.processes):
            self.stop_process(name)
        if self._started_kafka:
            self.kafka.stop()
        if self._started_postgres:
            self.postgres.stop()


def demo_tenant(stack: Stack) -> dict[str, str]:
    """The demo tenant's credentials, created once and kept in the state folder."""
    path = stack.config.state_dir / "demo-tenant.json"
    env = stack.service_env()
    if path.exists():
        saved = json.loads(path.read_text())
        check = subprocess.run(
            [sys.executable, "-m", "scrm_cli.main", "tenant", "exists", saved["tenant_id"]],
            env=env,
            capture_output=True,
        )
        if check.returncode == 0:
            return saved
    tenant = stack.create_tenant("demo")
    path.write_text(json.dumps(tenant))
    return tenant
