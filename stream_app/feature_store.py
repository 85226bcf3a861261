"""The Feast feature store as the engine uses it: Redis online store, parquet offline store.

The store is configured from the settings (no YAML with hosts in it): the registry lives in the
feature repo folder, the online store is the engine's Redis. Reads go through the
`nba_scoring` feature service; unknown customers come back as explicit nulls and are flagged
as cold starts; a push with a missing or mistyped column is refused naming the column.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from feast import FeatureStore, FeatureView, RepoConfig
from feast.data_source import PushMode
from feast.infra.online_stores.helpers import _mmh3, _redis_key
from feast.infra.online_stores.redis import _versioned_fv_name
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Int64
from feast.utils import make_tzaware
from google.protobuf.timestamp_pb2 import Timestamp

from features.definitions import ENGAGEMENT_FIELDS, TIMESTAMP, Definitions, definitions
from policies.errors import ConfigError, SchemaError
from stream_app.settings import Settings

__all__ = ["FeatureStoreAdapter", "ViewWriter", "fill_cold_start", "redis_connection_string"]

# (customer, as of, {feature: value}): some features of one view for one customer
ViewRow = tuple[str, datetime, Mapping[str, float]]

_INTEGER_KINDS = "iu"


def _value(dtype: Any, value: float) -> ValueProto:
    """Feast's value proto for a field of ``dtype`` (the views' Int64 and Float64 fields)."""
    if dtype == Int64:
        return ValueProto(int64_val=int(value))
    return ValueProto(double_val=float(value))


def redis_connection_string(url: str, timeout_s: float = 2.0, cluster: bool = False) -> str:
    """Feast's ``host:port,db=N[,password=...,ssl=true]`` from a ``redis://`` URL, with socket
    timeouts (Feast hands its parameters to redis-py): a hung Redis fails a read in
    ``timeout_s`` instead of stalling the worker. A cluster has no database number: the node's
    address is the seed the cluster client discovers the others from."""
    parsed = urlparse(url)
    if parsed.scheme not in ("redis", "rediss") or not parsed.hostname:
        raise ConfigError(
            f"NBA_REDIS_URL must look like redis://host:port/db, got scheme {parsed.scheme!r}"
        )
    parts = [f"{parsed.hostname}:{parsed.port or 6379}"]
    if not cluster:
        parts.append(f"db={(parsed.path or '/0').lstrip('/') or '0'}")
    parts += [f"socket_timeout={timeout_s:g}", f"socket_connect_timeout={timeout_s:g}"]
    if parsed.password:
        parts.append(f"password={parsed.password}")
    if parsed.scheme == "rediss":
        parts.append("ssl=true")
    return ",".join(parts)


class FeatureStoreAdapter:
    def __init__(
        self,
        settings: Settings,
        repo_dir: Path,
        data_dir: Path,
        project: str = "nba",
        generated: Definitions | None = None,
    ) -> None:
        """``generated``: a project file's views (features.project_repo) instead of the
        simulated world's."""
        repo_dir.mkdir(parents=True, exist_ok=True)
        self.data_dir = data_dir
        self.project = project
        self.definitions: Definitions = generated or definitions(data_dir)
        config = RepoConfig(
            project=project,  # also the key prefix in Redis: projects never see each other
            provider="local",
            registry=str(repo_dir / "registry.db"),
            online_store={
                "type": "redis",
                "redis_type": "redis_cluster" if settings.redis_cluster else "redis",
                "connection_string": redis_connection_string(
                    settings.effective_redis_url(), settings.redis_timeout_s, settings.redis_cluster
                ),
            },
            entity_key_serialization_version=3,
            repo_path=repo_dir,
        )
        self.store = FeatureStore(config=config)
        self._writers: dict[str, ViewWriter] = {}

    def apply(self) -> None:
        self.store.apply(self.definitions.objects())

    def materialize(self, start: datetime, end: datetime) -> None:
        self.store.materialize(start_date=start, end_date=end)

    def push_engagement(self, frame: pd.DataFrame) -> None:
        """Push streaming aggregates to the online store (ONLINE), after checking the columns."""
        self._check_push(frame)
        self.store.push("engagement_push_source", frame, to=PushMode.ONLINE)

    @staticmethod
    def _check_push(frame: pd.DataFrame) -> None:
        for column in ("customer_id", TIMESTAMP, *ENGAGEMENT_FIELDS):
            if column not in frame.columns:
                raise SchemaError(f"push refused: column {column!r} is missing")
        for column in ENGAGEMENT_FIELDS:
            if frame[column].dtype.kind not in _INTEGER_KINDS:
                raise SchemaError(
                    f"push refused: column {column!r} must hold integers, got {frame[column].dtype}"
                )
        if not pd.api.types.is_datetime64_any_dtype(frame[TIMESTAMP]):
            raise SchemaError(f"push refused: column {TIMESTAMP!r} must hold timestamps")

    def write_view(self, view: str, rows: Sequence[ViewRow]) -> None:
        """Write some features of ``view`` for (customer, as of, {feature: value}) rows as
        Feast's online-store write does (``ViewWriter``): only the features given change, and a
        row no newer than what the store holds is skipped (a push would need every feature of
        the view)."""
        if not rows:
            return
        writer = self.view_writer(view)
        writer.check(rows)
        client = self._online_client()
        with client.pipeline(transaction=False) as pipe:
            keys = writer.queue_reads(pipe, [customer for customer, _, _ in rows])
            stored = pipe.execute()
        with client.pipeline(transaction=False) as pipe:
            writer.queue_writes(pipe, rows, keys, stored)
            pipe.execute()

    def view_writer(self, view: str) -> ViewWriter:
        if view not in self._writers:
            self._writers[view] = ViewWriter(self, view)
        return self._writers[view]

    def entity_key(self, customer: str) -> bytes:
        """The customer's Redis hash in the online store (Feast's key format)."""
        return _redis_key(
            self.project,
            EntityKeyProto(
                join_keys=["customer_id"], entity_values=[ValueProto(string_val=customer)]
            ),
            3,
        )

    def _online_client(self) -> Any:
        """Feast's RedisOnlineStore's own client (a single server's or a cluster's)."""
        online = self.store._get_provider().online_store
        return online._get_client(self.store.config.online_store)  # type: ignore[attr-defined]

    def read(self, customer_ids: list[str]) -> pd.DataFrame:
        """The `nba_scoring` features of these customers (Feast SDK path), with ``cold_start``."""
        response = self.store.get_online_features(
            features=self.store.get_feature_service("nba_scoring"),
            entity_rows=[{"customer_id": c} for c in customer_ids],
        )
        frame = response.to_df()
        frame["cold_start"] = frame[self._profile_marker].isna().to_numpy()
        return frame

    @property
    def _profile_marker(self) -> str:
        """A profile field: null exactly when the customer has no profile (a cold start)."""
        return self.definitions.views["profile"].features[0].name

    def read_batch(self, customer_ids: list[str]) -> pd.DataFrame:
        """The same features read straight from the online store in Feast's key format (entity
        key + project, one hash field per ``view:feature`` through Feast's own helpers), one
        Redis pipeline for all views, without the SDK's response assembly: the engine's hot path,
        measured against `read` in benchmarks/feature_reads.py. Unknown customers get nulls and
        ``cold_start``; `tests/features` checks it returns exactly what `read` returns."""
        with self._online_client().pipeline(transaction=False) as pipe:
            self.queue_read(pipe, customer_ids)
            rows = pipe.execute()
        return self.frame_of(customer_ids, rows)

    def queue_read(self, pipe: Any, customer_ids: Sequence[str]) -> None:
        """``read_batch``'s reads queued in the caller's pipeline: one reply per customer,
        which ``frame_of`` reads."""
        keys, fields = self.online_keys(list(customer_ids))
        for key in keys:
            pipe.hmget(key, fields)

    def frame_of(
        self, customer_ids: Sequence[str], rows: Sequence[Sequence[bytes | None]]
    ) -> pd.DataFrame:
        """The frame ``read_batch`` gives, from the replies ``queue_read`` queued."""
        frame = pd.DataFrame({"customer_id": list(customer_ids)} | self._columns(rows))
        frame["cold_start"] = frame[self._profile_marker].isna().to_numpy()
        return frame

    def online_keys(self, customer_ids: list[str]) -> tuple[list[bytes], list[bytes]]:
        """Each customer's Redis hash in the online store, and the hash fields of the served
        features (the order `decoded_row` reads them in): what `read_batch` asks HMGET for, so
        a reader with a client of its own (the HTTP API's asyncio one) reads the same."""
        fields = [_mmh3(f"{view}:{feature}") for view, feature in self._served_features]
        return [self.entity_key(customer) for customer in customer_ids], fields

    def decoded_row(self, values: Sequence[bytes | None]) -> dict[str, Any]:
        """One customer's HMGET answer (`online_keys`' fields) as {feature: value} with
        ``cold_start``: what `read_batch` gives for that customer, without a DataFrame."""
        row = {
            feature: _decode(raw)
            for (_, feature), raw in zip(self._served_features, values, strict=True)
        }
        return row | {"cold_start": row[self._profile_marker] is None}

    def _columns(self, rows: Sequence[Sequence[bytes | None]]) -> dict[str, list[Any]]:
        return {
            feature: [_decode(row[k]) for row in rows]
            for k, (_, feature) in enumerate(self._served_features)
        }

    @property
    def _served_features(self) -> list[tuple[str, str]]:
        return [(view.name, f.name) for view in self._served_views for f in view.features]

    @property
    def _served_views(self) -> list[FeatureView]:
        service = self.definitions.nba_scoring
        return [self.definitions.views[p.name] for p in service.feature_view_projections]

    def historical(
        self, entity_rows: pd.DataFrame, features: list[str] | None = None
    ) -> pd.DataFrame:
        """Point-in-time correct features for (customer_id, event_timestamp) rows: each row sees
        the latest value at or before its own timestamp (the `nba_scoring` service by default).

        Feast's file (dask) offline store leaves out rows for which a view has no value yet."""
        wanted: Any = (
            features if features is not None else self.store.get_feature_service("nba_scoring")
        )
        return self.store.get_historical_features(entity_df=entity_rows, features=wanted).to_df()


class ViewWriter:
    """Feast's online write of some features of one view, as its RedisOnlineStore's
    ``online_write_batch`` does it (the same key, hash fields, serialized values, event-time
    field and key TTL; a row no newer than the stored event time is skipped), in its two round
    trips, queued by the caller: the stream's window rows ride in the activity state's own read
    and write pipelines (stream_app.aggregates). Feast's method owns its pipelines, so it costs
    two round trips more and its per-row Python: in process on the local Redis, batches of 140
    simulated events took 3.5-4.7 ms for the state and then Feast's write, 3.3-3.5 ms for the
    state with this writer (2.2 ms for the state alone). Feast's own ``online_write_batch``
    writes the same bytes: tests/features checks it."""

    def __init__(self, adapter: FeatureStoreAdapter, view: str) -> None:
        table = adapter.definitions.views[view]
        config = adapter.store.config
        name = _versioned_fv_name(table, config)
        self.view = view
        self._ts_field = f"_ts:{name}"
        self._kinds = {f.name: f.dtype for f in table.features}
        self._fields = {f: _mmh3(f"{name}:{f}") for f in self._kinds}
        self._ttl: int | None = config.online_store.key_ttl_seconds
        self._key = adapter.entity_key

    def check(self, rows: Sequence[ViewRow]) -> None:
        unknown = {f for _, _, values in rows for f in values} - set(self._kinds)
        if unknown:
            raise SchemaError(f"{self.view} has no feature(s) {sorted(unknown)}")

    def queue_reads(self, pipe: Any, customers: Sequence[str]) -> list[bytes]:
        """One reply per customer: the event time the store holds for the view; returns the
        customers' keys, which ``queue_writes`` takes back (each is serialized once)."""
        keys = [self._key(customer) for customer in customers]
        for key in keys:
            pipe.hmget(key, [self._ts_field])
        return keys

    def queue_writes(
        self, pipe: Any, rows: Sequence[ViewRow], keys: Sequence[bytes], stored: Sequence[Any]
    ) -> int:
        """The rows newer than what the store holds (``keys`` and ``stored``: ``queue_reads``'
        keys and replies, row by row) and than an earlier row of the same customer here;
        returns how many."""
        latest: dict[bytes, int] = {}
        for key, held in zip(keys, stored, strict=True):
            if held and held[0]:
                latest[key] = _nanos(Timestamp.FromString(held[0]))
        queued = 0
        for key, (_, at, values) in zip(keys, rows, strict=True):
            stamp = Timestamp()
            stamp.FromDatetime(make_tzaware(at))
            if _nanos(stamp) <= latest.get(key, 0):
                continue  # Feast's rule: older than, or the same instant as, the stored row
            latest[key] = _nanos(stamp)
            mapping = {self._ts_field: stamp.SerializeToString()} | {
                self._fields[name]: _value(self._kinds[name], v).SerializeToString()
                for name, v in values.items()
            }
            pipe.hset(key, mapping=mapping)
            if self._ttl:
                pipe.expire(name=key, time=self._ttl)
            queued += 1
        return queued


def _nanos(stamp: Timestamp) -> int:
    return int(stamp.seconds) * 1_000_000_000 + int(stamp.nanos)


def _decode(raw: bytes | None) -> Any:
    if raw is None:
        return None
    value = ValueProto.FromString(raw)
    kind = value.WhichOneof("val")
    return None if kind is None or kind == "null_val" else getattr(value, kind)


def fill_cold_start(
    frame: pd.DataFrame, defaults: pd.Series, counts: Sequence[str] = ()
) -> pd.DataFrame:
    """Give cold-start rows (unknown customers) the defaults, e.g. the base's medians, and any
    row the defaults of the ``counts`` columns it lacks.

    A known customer's null is information (an NPS never answered) except in a count: a count
    the online store does not hold is a gap (a view not materialized, or a row the stream wrote
    after the store was flushed), and scoring it would fail the batch on every retry.
    """
    cold = frame["cold_start"] if "cold_start" in frame.columns else frame["plan"].isna()
    present = [c for c in counts if c in frame.columns]
    gaps = any(frame[column].isna().any() for column in present)
    if not cold.any() and not gaps:  # the usual batch: a column-by-column pass was 15% of a
        return frame  # worker's time
    filled = frame.copy()
    for column, value in defaults.items():
        if column in filled.columns:
            keep = filled[column].notna() | (~cold if column not in present else False)
            filled[column] = filled[column].where(keep, value)
    return filled
