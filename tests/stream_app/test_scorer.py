"""The engine's scorer: manifest checks at start, one bundle call per batch, cold starts."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from model_export.features import feature_matrix
from model_export.manifest import Registry
from model_export.runs import export_run, save_run
from model_export.serving import BundleScorer
from model_export.training import train_models
from nba.commands.features import build_sources
from policies.catalog import CHANNELS, default_catalog
from policies.errors import ModelManifestError
from simulator.config import WorldConfig
from simulator.datasets import randomized_experiment
from simulator.world import World, build_world
from stream_app.scorer import BaseSummary, FeatureScoreSource, snapshot_reader
from stream_app.settings import load_settings
from stream_app.worker import base_features, base_summary

CATALOG = default_catalog()


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(n_customers=8_000, seed=4))


@pytest.fixture(scope="module")
def registry(world: World, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    root = tmp_path_factory.mktemp("registry")
    trained = train_models(
        randomized_experiment(world), CATALOG.names, "t", seed=1, n_estimators=30
    )
    registry = Registry(root / "registry")
    export_run(save_run(trained, root / "run", ""), registry, "v1")
    registry.promote("v1")
    return registry


def test_scores_come_from_the_bundle_and_cold_starts_get_defaults(
    registry: Registry, world: World
) -> None:
    scorer = BundleScorer(registry, CATALOG)
    source = FeatureScoreSource(snapshot_reader(world.customers), scorer, world.customers)
    ids = [*world.customers["customer_id"].tolist()[:10], "NEW-CUSTOMER"]
    scores = source.scores(ids, [f"e{i}" for i in range(len(ids))])
    p_churn, uplift, _ = scorer.predict(feature_matrix(world.customers.head(10)))
    assert np.allclose(scores.p_churn[:10], p_churn) and np.allclose(
        scores.uplift_retention[:10], uplift
    )
    assert (
        np.isfinite(scores.p_churn[10])
        and scores.customer_value[10] == world.customers["contract_value"].median()
    )
    assert 0.0 <= scores.engagement.min() and scores.engagement.max() <= 1.0
    assert world.customers["consent_email"].mean() > 0.5  # most of the base consents...
    assert not source.contacts(["NEW-CUSTOMER"]).consent.any()  # ...a stranger has not


def test_engagement_is_ranked_against_the_base_not_the_micro_batch(
    registry: Registry, world: World
) -> None:
    """A customer's engagement percentile (an axis of the segments that catalog rules may
    exclude) is the same in a batch of one as in a scored base: the batch path's."""
    source = FeatureScoreSource(
        snapshot_reader(world.customers), BundleScorer(registry, CATALOG), world.customers
    )
    ids = world.customers["customer_id"].astype(str).tolist()
    base = source.scores(ids, ids).engagement
    quiet = int(np.argmin(base))
    alone = source.scores([ids[quiet]], ["e"]).engagement
    assert alone[0] == base[quiet] < 0.01
    pair = source.scores([ids[quiet], ids[int(np.argmax(base))]], ["a", "b"]).engagement
    assert pair.tolist() == [base[quiet], base.max()]


def test_an_unknown_consent_is_no_consent(registry: Registry, world: World) -> None:
    known = world.customers.head(2).copy()
    known["consent_email"] = known["consent_email"].astype(object)
    known.loc[0, "consent_email"] = None
    known.loc[1, "consent_email"] = True
    source = FeatureScoreSource(
        snapshot_reader(known), BundleScorer(registry, CATALOG), world.customers
    )
    ids = known["customer_id"].tolist()
    source.scores(ids, ["e0", "e1"])
    email = CHANNELS.index("email")
    assert source.contacts(ids).consent[:, email].tolist() == [False, True]


def test_a_known_customer_missing_counts_gets_the_defaults_not_a_failed_batch(
    registry: Registry, world: World
) -> None:
    """A row the stream wrote after the store was flushed: profile back, 30/90-day counts gone
    (seen in benchmarks/faults.py, where it failed every retry of the batch)."""
    partial = world.customers.head(3).copy()
    partial.loc[0, ["logins_30d", "support_tickets_90d"]] = np.nan
    partial.loc[1, "nps_last"] = np.nan  # an NPS never answered: information, kept
    scorer = BundleScorer(registry, CATALOG)
    source = FeatureScoreSource(snapshot_reader(partial), scorer, world.customers)
    scores = source.scores(partial["customer_id"].tolist(), ["e0", "e1", "e2"])
    assert np.isfinite(scores.p_churn).all()
    filled = partial.copy()
    medians = world.customers[["logins_30d", "support_tickets_90d"]].median()
    filled.loc[0, ["logins_30d", "support_tickets_90d"]] = medians.to_numpy()
    p_churn, _, _ = scorer.predict(feature_matrix(filled))
    assert np.allclose(scores.p_churn, p_churn), "the gaps got the base's medians, nps stayed"


def test_a_manifest_that_does_not_match_the_feature_service_is_refused(
    registry: Registry, tmp_path: Path
) -> None:
    copy = Registry(tmp_path / "registry")
    (copy.root / "v1").mkdir(parents=True)
    manifest = json.loads((registry.root / "v1" / "manifest.json").read_text())
    manifest["features"] = list(reversed(manifest["features"]))
    (copy.root / "v1" / "manifest.json").write_text(json.dumps(manifest))
    (copy.root / "v1" / "bundle.onnx").write_bytes(registry.bundle_path("v1").read_bytes())
    copy.promote("v1")
    with pytest.raises(ModelManifestError, match="feature service"):
        BundleScorer(copy, CATALOG)


def test_no_promoted_model_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelManifestError, match="no promoted model"):
        BundleScorer(Registry(tmp_path / "empty"), CATALOG)


def test_batch_mode_decides_the_whole_base_within_budget(registry: Registry, world: World) -> None:
    from model_export.serving import decisions_frame, score_all
    from policies.decide import PolicyConfig

    scorer = BundleScorer(registry, CATALOG, threads=0)
    decisions = score_all(world.customers, scorer, PolicyConfig(), budget=20_000.0)
    frame = decisions_frame(world.customers, decisions, scorer.version)
    assert len(frame) == world.n and frame["customer_id"].is_unique
    assert frame["cost"].sum() <= 20_000.0 + 1e-6
    assert (frame.loc[frame["arm"] == "holdout", "action"] == "do_nothing").all()
    assert set(frame["action"]) <= set(CATALOG.names) and (frame["action"] != "do_nothing").any()


def test_the_worker_summarizes_the_base_a_column_at_a_time_to_the_same_defaults(
    world: World, tmp_path: Path
) -> None:
    build_sources(world, tmp_path)
    settings = load_settings(feature_data=tmp_path)
    lean, whole = base_summary(settings), BaseSummary.of(base_features(settings))
    assert sorted(lean.defaults.index) == sorted(whole.defaults.index)
    for column, value in whole.defaults.items():
        assert lean.defaults[column] == value or (pd.isna(value) and pd.isna(lean.defaults[column]))
    assert np.array_equal(lean.engagement_reference, whole.engagement_reference)
    assert lean.defaults["consent_email"] is False  # consent is never assumed
