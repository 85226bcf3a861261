"""A single-node Apache Kafka broker (KRaft, combined broker + controller) from Maven Central jars.

The jars are resolved once by Maven from ``deploy/kafka/pom.xml`` into the cache folder and reused
by every later start. Kafka 3.9.x: aiokafka (under Faust) is reported to have problems with 4.x.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import uuid
from base64 import urlsafe_b64encode
from pathlib import Path

from confluent_kafka.admin import AdminClient

from nba.local_servers.process import ManagedProcess
from policies.errors import InfraError

__all__ = ["KafkaBroker", "broker_answers", "fetch_jars"]

_POM = Path(__file__).resolve().parents[2] / "deploy" / "kafka" / "pom.xml"
_COMPLETE_MARKER = ".complete"
_QUIET = logging.getLogger("nba.infra.kafka.probe")
_QUIET.addHandler(logging.NullHandler())
_QUIET.propagate = False


def fetch_jars(cache_dir: Path, version: str) -> Path:
    """The folder of the broker's jars, downloading them with Maven only when not cached yet."""
    jar_dir = cache_dir / f"kafka-{version}"
    if (jar_dir / _COMPLETE_MARKER).exists():
        return jar_dir
    mvn = shutil.which("mvn")
    if mvn is None:
        raise InfraError(
            "kafka: Maven ('mvn') is not installed; install it (apt-get install maven)"
        )
    if shutil.which("java") is None:
        raise InfraError(
            "kafka: Java is not installed; install Java 17 (apt-get install openjdk-17-jre)"
        )
    staging = cache_dir / f".kafka-{version}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(  # noqa: S603  # fixed argv, no shell
        [
            mvn,
            "-q",
            "-B",
            "-f",
            str(_POM),
            "dependency:copy-dependencies",
            f"-Dkafka.version={version}",
            f"-DoutputDirectory={staging}",
            "-DincludeScope=runtime",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        last = (result.stdout + result.stderr).strip().splitlines()[-1:] or ["(no output)"]
        raise InfraError(f"kafka: Maven could not fetch Kafka {version} jars: {last[0]}")
    (staging / _COMPLETE_MARKER).write_text(version)
    shutil.rmtree(jar_dir, ignore_errors=True)
    staging.rename(jar_dir)
    return jar_dir


def _cluster_id() -> str:
    """A random KRaft cluster id. Like Kafka's own Uuid.randomUuid, never one that starts with
    '-': the storage tool's argument parser would read it as an option and refuse to format."""
    while True:
        candidate = urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not candidate.startswith("-"):
            return candidate


def broker_answers(bootstrap: str, timeout_s: float = 2.0) -> bool:
    """True when the broker answers a metadata request."""
    # The "logger" key is documented by confluent-kafka; its type stubs only allow scalars.
    admin = AdminClient({"bootstrap.servers": bootstrap, "logger": _QUIET})  # type: ignore[dict-item]
    try:
        metadata = admin.list_topics(timeout=timeout_s)
    except Exception:  # any failure means "not answering yet"
        return False
    return bool(metadata.brokers)


class KafkaBroker:
    """The broker's files (config, storage) under ``data_dir`` and its process."""

    def __init__(
        self,
        *,
        jar_dir: Path,
        data_dir: Path,
        run_dir: Path,
        port: int,
        controller_port: int,
        heap: str,
    ) -> None:
        self.jar_dir = jar_dir
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.heap = heap
        self.config_file = data_dir / "server.properties"
        java = shutil.which("java")
        if java is None:
            raise InfraError(
                "kafka: Java is not installed; install Java 17 (apt-get install openjdk-17-jre)"
            )
        self.process = ManagedProcess(
            name="kafka",
            argv=(
                java,
                f"-Xms{heap}",
                f"-Xmx{heap}",
                "-XX:+UseG1GC",
                f"-Dlog4j.configuration=file:{data_dir / 'log4j.properties'}",
                "-cp",
                f"{jar_dir}/*",
                "kafka.Kafka",
                str(self.config_file),
            ),
            ports=(port, controller_port),
            run_dir=run_dir,
        )

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def prepare(self) -> None:
        """Write the config and format KRaft storage once (a formatted dir keeps its cluster id)."""
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True)
            self.config_file.write_text(self._server_properties())
            (self.data_dir / "log4j.properties").write_text(_LOG4J)
        except OSError as exc:
            raise InfraError(
                f"kafka: data dir {self.data_dir} is not writable ({exc.strerror}); "
                "set NBA_STATE_DIR to a writable folder"
            ) from None
        if (self.data_dir / "logs" / "meta.properties").exists():
            return
        cluster_id = _cluster_id()
        result = subprocess.run(  # noqa: S603  # fixed argv, no shell
            [
                self.process.argv[0],
                "-cp",
                f"{self.jar_dir}/*",
                f"-Dlog4j.configuration=file:{self.data_dir / 'log4j.properties'}",
                "kafka.tools.StorageTool",
                "format",
                "-t",
                cluster_id,
                "-c",
                str(self.config_file),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            output = (result.stdout + result.stderr).strip()
            raise InfraError(f"kafka: formatting storage failed: {output[-300:]}")

    def _server_properties(self) -> str:
        return "\n".join(
            [
                "process.roles=broker,controller",
                "node.id=1",
                f"controller.quorum.voters=1@127.0.0.1:{self.controller_port}",
                f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.controller_port}",
                f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                "controller.listener.names=CONTROLLER",
                "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                "inter.broker.listener.name=PLAINTEXT",
                f"log.dirs={self.data_dir / 'logs'}",
                "num.partitions=6",
                # A single node: every internal topic has one replica.
                "offsets.topic.replication.factor=1",
                "transaction.state.log.replication.factor=1",
                "transaction.state.log.min.isr=1",
                "group.initial.rebalance.delay.ms=0",
                "auto.create.topics.enable=true",
                "",
            ]
        )


_LOG4J = """\
log4j.rootLogger=WARN, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.server.KafkaServer=INFO
log4j.logger.kafka.server.BrokerServer=INFO
"""
