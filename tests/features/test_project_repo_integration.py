"""A project's generated Feast repository on the real Redis: built from an import, applied,
materialized over the data's own time range, read back exactly."""

from __future__ import annotations

import uuid
from pathlib import Path

import pandas as pd
import pytest

from features.event_features import event_features
from features.project_repo import (
    build_project_sources,
    import_window,
    materialize_window,
    project_definitions,
)
from ingest.importer import import_project, imported_table
from ingest.project import load_project
from nba.commands.simulate import write_world
from simulator.config import validated
from stream_app.feature_store import FeatureStoreAdapter
from stream_app.settings import load_settings
from tests.ingest.test_public_datasets import EXAMPLES

pytestmark = pytest.mark.integration


def _store(redis_url: str, root: Path, project_file: Path) -> tuple[FeatureStoreAdapter, Path]:
    project = load_project(project_file)
    _, imported = import_project(project, root / "imported")
    build_project_sources(project, imported, root / "features")
    tables = {p.stem for p in imported.glob("*.parquet")}
    store = FeatureStoreAdapter(
        load_settings(redis_url=redis_url),
        root / "repo",
        root / "features",
        project=f"p{uuid.uuid4().hex[:8]}",
        generated=project_definitions(project, root / "features", tables),
    )
    store.apply()
    store.materialize(*materialize_window(imported))
    return store, imported


def test_hillstrom_profiles_are_read_back_as_imported(redis_url: str, tmp_path: Path) -> None:
    store, imported = _store(redis_url, tmp_path, EXAMPLES / "hillstrom/nba.yaml")
    assert set(store.definitions.views) == {"profile"}
    # The campaign's date is the data's own as-of, 2008: a fixed window would load nothing.
    assert import_window(imported).as_of.year == 2008
    customers = imported_table(imported, "customers").set_index("customer_id")
    online = store.read(["H1", "H2", "H64000", "nobody"]).set_index("customer_id")
    for column in ("recency", "history", "zip_code", "channel", "newbie"):
        expected = customers.loc[["H1", "H2", "H64000"], column].tolist()
        assert online.loc[["H1", "H2", "H64000"], column].tolist() == expected, column
    assert online["cold_start"].tolist() == [False, False, False, True]
    direct = store.read_batch(["H1", "nobody"]).set_index("customer_id")
    assert direct.loc["H1", "history"] == customers.loc["H1", "history"]


def test_a_simulated_world_gets_event_windows_and_clv(redis_url: str, tmp_path: Path) -> None:
    write_world(validated(n_customers=400, seed=9), tmp_path / "world", events_days=1.0)
    store, imported = _store(redis_url, tmp_path, tmp_path / "world/nba.yaml")
    assert set(store.definitions.views) == {"profile", "event_windows", "clv"}
    events = imported_table(imported, "events")
    busiest = str(events["customer_id"].value_counts().index[0])
    online = store.read([busiest]).iloc[0]
    asked = pd.DataFrame(
        {"customer_id": [busiest], "at": [pd.Timestamp(import_window(imported).as_of)]}
    )
    project = load_project(tmp_path / "world/nba.yaml")
    batch = event_features(events, asked, project.event_features).iloc[0]
    for feature in project.event_features:
        assert online[feature.name] == pytest.approx(batch[feature.name]), feature.name
    assert online["logins_24h"] > 0
    assert online["clv_12m"] >= 0 and not online["cold_start"]
