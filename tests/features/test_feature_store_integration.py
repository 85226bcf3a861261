"""The Feast repository against the real Redis, single and clustered: apply, materialize, push,
read, point in time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto
from feast.types import Int64

from features.definitions import ENGAGEMENT_FIELDS, TIMESTAMP
from model_export.features import feature_matrix
from nba.commands.features import build_sources
from policies.errors import SchemaError
from simulator.config import WorldConfig
from simulator.world import AS_OF, World, build_world
from stream_app.aggregates import ActivityStore
from stream_app.feature_store import FeatureStoreAdapter, fill_cold_start
from stream_app.messages import EngagementEvent
from stream_app.pipeline import RawMessage
from stream_app.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(n_customers=1_500, seed=5))


@pytest.fixture(scope="module", params=["redis", "redis-cluster"])
def store(
    world: World, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> FeatureStoreAdapter:
    """The online store on a single Redis, and on a Redis Cluster (Feast's ``redis_cluster``)."""
    if request.param == "redis":
        settings = load_settings(redis_url=request.getfixturevalue("redis_url"))
    else:
        settings = request.getfixturevalue("redis_cluster_settings")
    root = tmp_path_factory.mktemp("feast")
    build_sources(world, root / "data")
    adapter = FeatureStoreAdapter(
        settings,
        root / "repo",
        root / "data",
        project=f"t{uuid.uuid4().hex[:8]}",
    )
    adapter.apply()
    adapter.materialize(AS_OF - timedelta(days=2), AS_OF + timedelta(days=1))
    return adapter


def test_materialized_values_read_back_exactly(store: FeatureStoreAdapter, world: World) -> None:
    ids = world.customers["customer_id"].tolist()[:50]
    online = store.read(ids).set_index("customer_id")
    source = world.customers.set_index("customer_id").loc[ids]
    for column in (
        "seats",
        "contract_value",
        "logins_30d",
        "support_tickets_90d",
        "plan",
        "consent_phone",
    ):
        assert online[column].tolist() == source[column].tolist(), column
    assert not online["cold_start"].any()


def test_batch_jobs_land_in_the_online_store(store: FeatureStoreAdapter, world: World) -> None:
    ids = world.customers["customer_id"].tolist()[:30]
    online = store.read(ids).set_index("customer_id")
    for name, columns in {
        "clv": ["clv_12m", "p_alive"],
        "rfm": ["rfm_score", "rfm_segment"],
        "persona": ["persona"],
    }.items():
        table = (
            pd.read_parquet(store.data_dir / f"{name}.parquet").set_index("customer_id").loc[ids]
        )
        for column in columns:
            expected = table[column].tolist()
            got = online[column].tolist()
            if table[column].dtype.kind == "f":
                assert np.allclose(got, expected), column
            else:
                assert got == expected, column


def test_the_feature_service_feeds_the_model_vector(
    store: FeatureStoreAdapter, world: World
) -> None:
    ids = world.customers["customer_id"].tolist()[:20]
    online = store.read(ids)
    assert np.allclose(feature_matrix(online), feature_matrix(world.customers.iloc[:20]))


def test_push_then_read_back(store: FeatureStoreAdapter, world: World) -> None:
    customer = str(world.customers["customer_id"].iloc[7])
    row = {"customer_id": [customer], TIMESTAMP: [pd.Timestamp(datetime.now(UTC))]}
    row.update({name: [100 + k] for k, name in enumerate(ENGAGEMENT_FIELDS)})
    store.push_engagement(pd.DataFrame(row))
    back = store.read([customer]).iloc[0]
    assert [int(back[name]) for name in ENGAGEMENT_FIELDS] == [
        100 + k for k in range(len(ENGAGEMENT_FIELDS))
    ]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda f: f.drop(columns=["logins_30d"]), "'logins_30d' is missing"),
        (lambda f: f.assign(exports_30d="many"), "'exports_30d' must hold integers"),
        (lambda f: f.assign(event_timestamp="yesterday"), "must hold timestamps"),
    ],
)
def test_a_bad_push_is_refused_naming_the_column(
    store: FeatureStoreAdapter, change, needle: str
) -> None:  # type: ignore[no-untyped-def]
    row = {"customer_id": ["C1"], TIMESTAMP: [pd.Timestamp(datetime.now(UTC))]}
    row.update({name: [1] for name in ENGAGEMENT_FIELDS})
    with pytest.raises(SchemaError, match=needle):
        store.push_engagement(change(pd.DataFrame(row)))


def test_unknown_customers_get_explicit_nulls_and_a_cold_start_flag(
    store: FeatureStoreAdapter, world: World
) -> None:
    known = str(world.customers["customer_id"].iloc[0])
    frame = store.read([known, "NEVER-SEEN"]).set_index("customer_id")
    assert not frame.loc[known, "cold_start"] and frame.loc["NEVER-SEEN", "cold_start"]
    assert pd.isna(frame.loc["NEVER-SEEN", "seats"]) and pd.isna(frame.loc["NEVER-SEEN", "plan"])
    defaults = world.customers[["seats", "logins_30d"]].median()
    filled = fill_cold_start(frame, defaults)
    assert filled.loc["NEVER-SEEN", "seats"] == defaults["seats"]
    assert filled.loc[known, "seats"] == frame.loc[known, "seats"]


def test_historical_retrieval_is_point_in_time_correct(
    redis_url: str, tmp_path: Path, world: World
) -> None:
    """A value that changes over time: each entity row sees the value as of its own timestamp."""
    build_sources(world, tmp_path / "data")
    t1, t2 = pd.Timestamp("2025-06-01", tz="UTC"), pd.Timestamp("2025-09-01", tz="UTC")
    profile = pd.read_parquet(tmp_path / "data" / "profile.parquet")
    early = profile.head(1).assign(seats=10, **{TIMESTAMP: t1})
    late = profile.head(1).assign(seats=20, **{TIMESTAMP: t2})
    pd.concat([early, late]).to_parquet(tmp_path / "data" / "profile.parquet", index=False)
    adapter = FeatureStoreAdapter(
        load_settings(redis_url=redis_url),
        tmp_path / "repo",
        tmp_path / "data",
        project=f"p{uuid.uuid4().hex[:8]}",
    )
    adapter.apply()
    customer = str(profile["customer_id"].iloc[0])
    asked = pd.DataFrame(
        {
            "customer_id": [customer] * 4,
            TIMESTAMP: [
                t1 - pd.Timedelta(days=1),
                t1 + pd.Timedelta(days=1),
                t2 - pd.Timedelta(seconds=1),
                t2 + pd.Timedelta(days=1),
            ],
        }
    )
    seen = adapter.historical(asked, ["profile:seats"]).set_index(TIMESTAMP)["seats"]
    assert seen.get(asked[TIMESTAMP][0], None) is None or pd.isna(seen[asked[TIMESTAMP][0]]), (
        "nothing before it existed"
    )
    assert [seen[t] for t in asked[TIMESTAMP][1:]] == [10, 10, 20], (
        "each row sees its own past only"
    )


def test_the_fast_read_path_returns_what_the_sdk_returns(
    store: FeatureStoreAdapter, world: World
) -> None:
    ids = [*world.customers["customer_id"].tolist()[:40], "NEVER-SEEN"]
    sdk = store.read(ids).set_index("customer_id").sort_index(axis=1)
    fast = store.read_batch(ids).set_index("customer_id").sort_index(axis=1)
    assert list(sdk.columns) == list(fast.columns)
    for column in sdk.columns:
        left, right = sdk[column].tolist(), fast[column].tolist()
        assert all(
            (pd.isna(a) and pd.isna(b)) or a == b for a, b in zip(left, right, strict=True)
        ), column


def test_stream_windows_update_only_their_features_and_never_go_back_in_time(
    store: FeatureStoreAdapter, world: World
) -> None:
    customer = str(world.customers["customer_id"].iloc[11])
    before = store.read_batch([customer]).iloc[0]
    now = datetime.now(UTC)
    windows = {"events_1h": 3, "events_24h": 9, "events_7d": 40, "distinct_features_7d": 5}
    store.write_view("engagement_stream", [(customer, now, windows)])
    after = store.read_batch([customer]).iloc[0]
    assert {k: int(after[k]) for k in windows} == windows
    assert int(after["logins_30d"]) == int(before["logins_30d"]), "batch counts untouched"
    stale = {"events_1h": 0, "events_24h": 0, "events_7d": 0, "distinct_features_7d": 0}
    store.write_view("engagement_stream", [(customer, now - timedelta(hours=1), stale)])
    assert int(store.read_batch([customer]).iloc[0]["events_7d"]) == 40, "older write skipped"
    with pytest.raises(SchemaError, match="no feature"):
        store.write_view("engagement_stream", [(customer, now, {"events_1y": 1})])


def test_the_stream_writes_the_bytes_feasts_own_online_write_writes(
    store: FeatureStoreAdapter,
) -> None:
    """The same rows through `write_view` (ViewWriter) and through Feast's
    RedisOnlineStore.online_write_batch, for two new customers: identical hashes."""
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    values = {"events_1h": 2, "events_24h": 7, "events_7d": 31, "distinct_features_7d": 4}
    ours, feasts = f"ours-{uuid.uuid4().hex[:6]}", f"feast-{uuid.uuid4().hex[:6]}"
    store.write_view("engagement_stream", [(ours, at, values)])
    view = store.definitions.views["engagement_stream"]
    assert all(f.dtype == Int64 for f in view.features if f.name in values)
    key = EntityKeyProto(join_keys=["customer_id"], entity_values=[ValueProto(string_val=feasts)])
    data = [(key, {name: ValueProto(int64_val=v) for name, v in values.items()}, at, None)]
    store.store._get_provider().online_store.online_write_batch(
        store.store.config, view, data, None
    )
    client = store._online_client()
    written = client.hgetall(store.entity_key(ours))
    assert written and written == client.hgetall(store.entity_key(feasts))


def test_the_activity_state_writes_its_windows_to_the_online_store(
    store: FeatureStoreAdapter, world: World
) -> None:
    """ActivityStore with the view's writer: each customer's windows are what the online store
    then serves, written in the state's own round trips; a batch processed again changes
    nothing."""
    customers = [str(c) for c in world.customers["customer_id"].iloc[20:23]]
    now = datetime.now(UTC).replace(microsecond=0)
    events = [
        (
            RawMessage("t", 0, k, customers[k % 3].encode(), b"{}", {}, 0),
            EngagementEvent(
                event_id=f"w{k}",
                customer_id=customers[k % 3],
                event_type="login",
                occurred_at=now - timedelta(minutes=97 * k),
                properties={},
            ),
        )
        for k in range(12)
    ]
    activity = ActivityStore(
        store._online_client(), f"g{uuid.uuid4().hex[:6]}", store.view_writer("engagement_stream")
    )
    rows = activity.apply(events)
    served = store.read_batch(customers).set_index("customer_id")
    for customer, _, counts in rows:
        assert {k: int(served.loc[customer, k]) for k in counts} == counts
    assert {c: counts["events_24h"] for c, _, counts in rows} == {c: 4 for c in customers}
    assert activity.apply(events) == rows
