"""The one settings object of a process: pydantic-settings, environment variables prefixed ``NBA_``.

Nothing else in the project reads ``os.environ``. Settings are frozen; a bad value fails at start
with one line naming the variable (see ``load_settings``).
"""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path
from urllib.parse import urlparse

from pydantic import AwareDatetime, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError

from policies.errors import ConfigError
from simulator.project import TRIGGERS

__all__ = ["Settings", "load_settings"]

_DEFAULT_STATE_DIR = Path(".nba")
_DEFAULT_CACHE_DIR = Path.home() / ".cache" / "nba"
# Never echoed back in an error message.
_SECRET_FIELDS = frozenset({"kafka_sasl_password", "redis_url"})


class Settings(BaseSettings):
    """Every knob of the engine and of its local infrastructure."""

    model_config = SettingsConfigDict(env_prefix="NBA_", frozen=True, extra="forbid")

    # Kafka: when set, the engine and the tests use this cluster instead of starting their own.
    kafka_bootstrap: str | None = Field(
        default=None, description="host:port list of an existing Kafka cluster"
    )
    kafka_security_protocol: str = Field(
        default="PLAINTEXT", pattern="^(PLAINTEXT|SSL|SASL_PLAINTEXT|SASL_SSL)$"
    )
    kafka_sasl_mechanism: str | None = Field(
        default=None, pattern="^(PLAIN|SCRAM-SHA-256|SCRAM-SHA-512)$"
    )
    kafka_sasl_username: str | None = None
    kafka_sasl_password: SecretStr | None = None
    kafka_ssl_cafile: Path | None = None

    # Redis: when set, used instead of the project's own server.
    redis_url: SecretStr | None = Field(
        default=None, description="redis://[:password@]host:port/db"
    )

    # Topics (ARCHITECTURE.md).
    topic_events: str = "engagement-events"
    topic_actions: str = "nba-actions"
    topic_outcomes: str = "outcomes"
    topic_dlq: str = "nba-dlq"
    topic_partitions: int = Field(default=6, ge=1, le=1000)
    topic_replication_factor: int = Field(
        default=1, ge=1, le=10, description="of the topics the worker creates (its changelogs)"
    )

    # The worker (`nba worker`): consumer group, triggers, the period's budget and arms.
    consumer_group: str = Field(default="nba-engine", min_length=1)
    # librdkafka's defaults (45 s session) notice a killed worker late; 10 s / 3 s hand its
    # partitions to the others within about 10 s (shared/STACK_NOTES.md).
    kafka_session_timeout_ms: int = Field(default=10_000, ge=3_000, le=300_000)
    kafka_heartbeat_interval_ms: int = Field(default=3_000, ge=500, le=60_000)
    kafka_fetch_max_wait_ms: int = Field(
        default=20, ge=1, le=1_500, description="longest the broker holds a fetch without data"
    )
    # The decide path publishes in Kafka transactions. A worker killed mid-transaction keeps
    # read_committed readers of its partitions waiting until its successor (same worker id)
    # starts, or this timeout aborts the transaction on the broker.
    kafka_transaction_timeout_ms: int = Field(default=60_000, ge=5_000, le=900_000)
    worker_id: str | None = Field(
        default=None,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="stable per worker (its transactional.id); default: host and metrics port",
    )
    # Default: the simulated world's triggers (its project file declares the same).
    trigger_event_types: frozenset[str] = frozenset(TRIGGERS)
    trigger_min_interval_s: float = Field(default=86_400.0, ge=0)
    max_message_bytes: int = Field(default=64_000, ge=1_000, le=900_000)
    max_event_future_s: float = Field(
        default=300.0, ge=0, description="how far ahead of the engine's clock an event may be"
    )
    batch_size: int = Field(default=500, ge=1, le=10_000)
    batch_wait_s: float = Field(
        default=0.05, gt=0, le=5, description="how long an idle worker waits for an event"
    )
    overlap_min_events: int = Field(
        default=50,
        ge=0,
        description=(
            "decide the next micro-batch while the last one's transaction commits when it has "
            "at least this many events (0: always; above NBA_BATCH_SIZE: never)"
        ),
    )
    budget: float = Field(
        default=100_000.0, ge=0, description="spend allowed per budget period ($)"
    )
    budget_period: str = Field(default="default", pattern=r"^[A-Za-z0-9._-]+$")
    pacing_period_s: float = Field(default=86_400.0, gt=0)
    # When the budget period began (ISO 8601 with a UTC offset): every worker, and one restarted
    # mid-period, then paces on the same curve. Unset: the curve starts when the worker does.
    pacing_start: AwareDatetime | None = None
    pacing_initial_price: float = Field(default=1.0, gt=0)
    experiment: str = Field(default="nba-default", min_length=1)
    holdout_share: float = Field(default=0.10, ge=0, lt=1)
    explore_share: float = Field(default=0.05, ge=0, lt=1)

    # A team's own data: the project file (ingest/, docs/data-contract.md) and where
    # `nba data import` publishes the validated tables (<imported_data>/current).
    project: Path | None = Field(default=None, description="the project file (YAML)")
    imported_data: Path = Field(default=Path("data/imported"), description="imported tables")

    # Features: the Feast registry folder and the parquet sources of the feature views.
    feature_repo: Path = Field(default=Path(".nba/feature_repo"), description="Feast registry")
    feature_data: Path = Field(default=Path("data/features"), description="feature sources")
    feature_project: str = Field(
        default="nba", pattern=r"^[A-Za-z0-9_]+$", description="Feast project"
    )

    # Models: the registry of ONNX bundles and their manifests (`nba models ...`).
    model_registry: Path = Field(default=Path("models/registry"), description="registered bundles")
    redis_cluster: bool = Field(
        default=False,
        description="NBA_REDIS_URL names one node of a Redis Cluster (the local one: "
        "`nba infra up --redis-cluster`)",
    )
    redis_timeout_s: float = Field(
        default=2.0, gt=0, le=60, description="longest wait for Redis to connect or answer"
    )
    max_outage_s: float = Field(
        default=600.0,
        gt=0,
        description="how long a worker waits out Kafka or Redis before it exits",
    )
    log_level: str = Field(
        default="WARNING",
        pattern=r"^(DEBUG|INFO|WARNING|ERROR|CRITICAL)$",
        description="of the worker's log (INFO shows rebalances and table recovery)",
    )
    model_reload_s: float = Field(
        default=10.0, ge=0, description="how often the worker looks for a newly promoted model"
    )

    # The local infrastructure that `nba infra up` starts.
    state_dir: Path = Field(default=_DEFAULT_STATE_DIR, description="PID files, logs and data")
    cache_dir: Path = Field(default=_DEFAULT_CACHE_DIR, description="downloaded Kafka jars")
    kafka_version: str = Field(default="3.9.1", pattern=r"^3\.9\.\d+$")
    kafka_port: int = Field(default=39092, ge=1024, le=65535)
    kafka_controller_port: int = Field(default=39093, ge=1024, le=65535)
    kafka_heap: str = Field(default="512m", pattern=r"^\d+[mg]$")
    redis_port: int = Field(default=36379, ge=1024, le=65535)
    redis_cluster_port: int = Field(
        default=37001, ge=1024, le=65532, description="the local cluster's first of 3 ports"
    )
    prometheus_port: int = Field(default=39090, ge=1024, le=65535)
    metrics_port: int = Field(default=39100, ge=1024, le=65535)
    metrics_host: str = Field(default="127.0.0.1", description="0.0.0.0 in a container")
    api_host: str = Field(default="127.0.0.1", description="the decision API's address")
    api_port: int = Field(default=39200, ge=1024, le=65535)
    api_keys_file: Path | None = Field(
        default=None,
        description="hashed API keys (`nba api key create`); default <NBA_STATE_DIR>/api_keys.json",
    )
    api_max_body_bytes: int = Field(default=16_384, ge=256, le=1_000_000)
    api_decision_timeout_s: float = Field(
        default=5.0, gt=0, le=60, description="how long POST /v1/decisions waits for the worker"
    )
    prometheus_scrape_interval_s: float = Field(default=5.0, ge=0.5, le=300)
    start_timeout_s: float = Field(default=60.0, gt=0)

    @property
    def keys_file(self) -> Path:
        return self.api_keys_file or self.state_dir / "api_keys.json"

    @property
    def local_kafka_bootstrap(self) -> str:
        return f"127.0.0.1:{self.kafka_port}"

    @field_validator("redis_url")
    @classmethod
    def _redis_url_parses(cls, url: SecretStr | None) -> SecretStr | None:
        """A malformed URL fails here, in one line that never shows the URL (it may hold a
        password), not later inside the Redis client."""
        text = url.get_secret_value() if url is not None else ""
        if not text:
            return url
        parts = urlparse(text)
        if parts.scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        try:
            parts.port  # noqa: B018  # urllib checks the port only when asked
        except ValueError:
            raise ValueError("its port is not a number between 0 and 65535") from None
        return url

    @property
    def local_redis_url(self) -> str:
        port = self.redis_cluster_port if self.redis_cluster else self.redis_port
        return f"redis://127.0.0.1:{port}/0"

    def transactional_id(self) -> str:
        """The worker's Kafka transactional.id: the same across its restarts, so that a
        restarted worker aborts what its previous run left open; unique per worker of a host
        because each serves its own metrics port."""
        worker = self.worker_id or f"{socket.gethostname()}-{self.metrics_port}"
        return f"{self.consumer_group}-{worker}"

    def effective_kafka_bootstrap(self) -> str:
        return self.kafka_bootstrap or self.local_kafka_bootstrap

    def effective_redis_url(self) -> str:
        return self.redis_url.get_secret_value() if self.redis_url else self.local_redis_url

    def environment(self) -> dict[str, str]:
        """These settings as NBA_ variables, e.g. for a worker process started by the demo
        (the local servers' addresses made explicit, secrets in clear: keep it in memory)."""
        rendered: dict[str, str] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, SecretStr):
                value = value.get_secret_value()
            elif isinstance(value, frozenset | set | list | tuple):
                value = json.dumps(sorted(value))
            rendered[f"NBA_{name.upper()}"] = str(value)
        rendered["NBA_KAFKA_BOOTSTRAP"] = self.effective_kafka_bootstrap()
        rendered["NBA_REDIS_URL"] = self.effective_redis_url()
        return rendered


def load_settings(**overrides: object) -> Settings:
    """Build the settings from the environment, turning a validation failure into a ConfigError."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]  # keyword overrides are validated by pydantic
    except (
        SettingsError
    ) as exc:  # a value that is not even parseable (e.g. a list that is not JSON)
        found = re.search(r'field "(\w+)"', str(exc))
        name = f"NBA_{found.group(1).upper()}" if found else "an NBA_ variable"
        raise ConfigError(
            f'invalid setting {name}: not parseable (lists and sets are JSON, e.g. ["a","b"])'
        ) from None
    except ValidationError as exc:
        first = exc.errors()[0]
        field = str(first["loc"][0]) if first["loc"] else "?"
        shown = "" if field in _SECRET_FIELDS else f" (got {first.get('input')!r})"
        raise ConfigError(f"invalid setting NBA_{field.upper()}: {first['msg']}{shown}") from None
