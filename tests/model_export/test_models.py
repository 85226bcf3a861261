"""Learners, bundle parity, manifest and registry, on a fixed simulated experiment."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pandas as pd
import pytest

import model_export.runs as runs
from model_export.batch_serving import NativeScorer, batch_scorer
from model_export.bundle import OUTPUTS, build_bundle
from model_export.features import FEATURES, feature_matrix
from model_export.learners import LEARNERS, make_learner
from model_export.manifest import NATIVE_FILE, Registry
from model_export.runs import export_run, save_run
from model_export.serving import BundleScorer
from model_export.training import Trained, train_models
from nba.commands.simulate import truth_frame
from policies.catalog import default_catalog
from policies.errors import ModelManifestError, SchemaError
from simulator.config import WorldConfig
from simulator.datasets import legacy_history, randomized_experiment
from simulator.world import World, build_world

ACTIONS = default_catalog().names
SMALL = 60  # trees per model: enough to learn, quick to test


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(n_customers=30_000, seed=7))


@pytest.fixture(scope="module")
def experiment(world: World) -> pd.DataFrame:
    return randomized_experiment(world)


@pytest.fixture(scope="module")
def trained(world: World, experiment: pd.DataFrame) -> Trained:
    return train_models(
        experiment,
        ACTIONS,
        "s",
        seed=1,
        truth=truth_frame(world),
        legacy=legacy_history(world),
        n_estimators=SMALL,
    )


def _arrays(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    return (
        feature_matrix(frame),
        frame["treatment_index"].to_numpy(np.int64),
        frame["retained"].to_numpy(np.float64),
        frame["propensity"].to_numpy(np.float64),
    )


@pytest.mark.parametrize("learner", sorted(LEARNERS))
def test_bundle_equals_the_native_learners(
    learner: str, trained: Trained, experiment: pd.DataFrame
) -> None:
    x, t, y, p = _arrays(experiment)
    retention = make_learner(learner, len(ACTIONS), seed=3, n_estimators=SMALL).fit(x, t, y, p)
    model = build_bundle(FEATURES, ACTIONS, trained.churn, retention, trained.expansion, "test")
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sample = x[:1_000]
    p_churn, uplift, expansion = session.run(list(OUTPUTS), {"features": sample})
    assert np.abs(p_churn[:, 0] - trained.churn.predict_proba(sample)).max() <= 1e-5
    assert np.abs(uplift - retention.predict_uplift(sample)).max() <= 1e-5
    assert np.abs(expansion - trained.expansion.predict_uplift(sample)).max() <= 1e-5
    assert np.all(uplift[:, 0] == 0)


def test_uplift_ranking_follows_the_true_effects(trained: Trained) -> None:
    # Measured with this fixture (30,000 accounts, S-learner, 60 trees): Spearman vs the true
    # uplift 0.68 for the call, 0.54 discount, 0.24 email, 0.24 upsell, 0.24 webinar. The
    # thresholds leave room for library updates, not for a broken learner (a shuffled ranking
    # scores about 0).
    spearman = {a: m["spearman_vs_true"] for a, m in trained.metrics["uplift"].items()}
    assert spearman["account_manager_call"] >= 0.55
    assert spearman["discount_offer"] >= 0.4
    assert min(spearman.values()) >= 0.1
    assert trained.metrics["uplift"]["account_manager_call"]["qini"] > 0


def test_churn_model_is_calibrated_and_beats_chance(trained: Trained) -> None:
    churn = trained.metrics["churn_xgboost"]
    assert churn["roc_auc"] >= 0.72
    assert churn["ece"] < trained.metrics["churn_xgboost_uncalibrated"]["ece"]
    assert churn["ece"] <= 0.05


def test_the_legacy_log_misleads_a_naive_learner(trained: Trained) -> None:
    legacy = trained.metrics["legacy_log"]
    assert legacy["true_mean_call_uplift"] > 0 > legacy["naive_mean_call_uplift"]


def test_export_registers_a_manifest_that_round_trips(trained: Trained, tmp_path: Path) -> None:
    run = save_run(trained, tmp_path / "run", "<html></html>")
    registry = Registry(tmp_path / "registry")
    manifest = export_run(run, registry, "v1")
    assert manifest.parity.passed and manifest.parity.max_abs_diff <= 1e-5
    assert registry.manifest("v1") == manifest
    assert registry.promote("v1").version == "v1" and registry.champion() == "v1"
    manifest.check_serves(FEATURES, ACTIONS)
    with pytest.raises(ModelManifestError, match="feature service"):
        manifest.check_serves(tuple(reversed(FEATURES)), ACTIONS)
    with pytest.raises(ModelManifestError, match="already exists"):
        export_run(run, registry, "v1")


def test_a_tampered_bundle_cannot_be_promoted(trained: Trained, tmp_path: Path) -> None:
    registry = Registry(tmp_path / "registry")
    export_run(save_run(trained, tmp_path / "run", ""), registry, "v1")
    bundle = registry.bundle_path("v1")
    bundle.write_bytes(bundle.read_bytes() + b"\0")
    with pytest.raises(ModelManifestError, match="checksum"):
        registry.promote("v1")


def test_batch_mode_serves_the_native_models_the_bundle_was_checked_against(
    trained: Trained, experiment: pd.DataFrame, tmp_path: Path
) -> None:
    registry = Registry(tmp_path / "registry")
    export_run(save_run(trained, tmp_path / "run", ""), registry, "v1")
    scorer = batch_scorer(registry, default_catalog(), "v1")
    assert isinstance(scorer, NativeScorer) and scorer.version == "v1"
    sample = feature_matrix(experiment)[:2_000]
    native = scorer.predict(sample)
    assert np.array_equal(native[0], trained.churn.predict_proba(sample))
    assert np.array_equal(native[1], trained.retention.predict_uplift(sample))
    onnx = BundleScorer(registry, default_catalog(), "v1").predict(sample)
    assert all(np.abs(a - b).max() <= 1e-5 for a, b in zip(native, onnx, strict=True))
    native_file = registry.folder("v1") / NATIVE_FILE
    native_file.write_text(native_file.read_text().replace("0.", "0.1", 1))
    with pytest.raises(ModelManifestError, match="native.json does not match"):
        batch_scorer(registry, default_catalog(), "v1")


def test_parity_check_catches_a_perturbed_model(
    trained: Trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = runs.build_bundle

    def perturbed(features, actions, churn, retention, expansion, version):  # type: ignore[no-untyped-def]
        churn.a_ += 0.01  # the bundle is built from a model that is not the native one
        try:
            return original(features, actions, churn, retention, expansion, version)
        finally:
            churn.a_ -= 0.01

    monkeypatch.setattr(runs, "build_bundle", perturbed)
    registry = Registry(tmp_path / "registry")
    with pytest.raises(ModelManifestError, match="parity check failed"):
        export_run(save_run(trained, tmp_path / "run", ""), registry, "bad")
    assert registry.versions() == [] and not (tmp_path / "registry" / "bad").exists()


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (lambda f: f.drop(columns=["propensity"]), "propensity"),
        (lambda f: f.drop(columns=["logins_30d"]), "logins_30d"),
        (lambda f: f.assign(treatment="retention_email", treatment_index=2), "no control group"),
        (lambda f: f.assign(retained=True), "single value"),
        (lambda f: f.assign(seats=np.nan), "seats"),
        (lambda f: f.assign(treatment="fax_blast"), "fax_blast"),
    ],
)
def test_bad_training_data_is_named(experiment: pd.DataFrame, change, needle: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(SchemaError, match=needle):
        train_models(change(experiment.head(3_000)), ACTIONS, "t", n_estimators=5)


def test_the_training_report_gives_three_ratios_on_held_out_customers(trained: Trained) -> None:
    """Against the true-effect oracle under the same rules (the headline), the realized-outcome
    oracle (the ceiling) and risk-sorted (V1); with the share of treated customers harmed."""
    for budget, value in trained.metrics["policy_value_on_held_out"].items():
        headline, ceiling = value["vs_true_effect_oracle"], value["vs_realized_outcome_oracle"]
        assert headline is not None and ceiling is not None, budget
        assert 0 < ceiling < headline <= 1.0, (budget, value)  # the oracle knows more
        assert value["vs_risk_sorted"] is not None and value["vs_risk_sorted"] > 1, value
        assert 0 <= value["harmful_share_of_treated"] < 0.5, value


def test_the_r_learner_recovers_known_effects_of_either_sign() -> None:
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.uniform(size=(n, 3)).astype(np.float32)
    shares = np.array([0.5, 0.25, 0.25])
    t = rng.choice(3, size=n, p=shares)
    effect = np.column_stack([np.zeros(n), 0.3 * x[:, 0], -0.2 * x[:, 1]])
    y = (rng.random(n) < 0.3 + effect[np.arange(n), t]).astype(np.float64)
    learner = make_learner("r", 3, seed=0, n_estimators=SMALL).fit(x, t, y, shares[t])
    uplift = learner.predict_uplift(x)
    # Measured: correlation 0.82 and 0.78 with the true effects (DR 0.81 / 0.79, T 0.84 / 0.80
    # on the same rows); a learner that lost the effect's shape scores about 0.
    for a in (1, 2):
        assert np.corrcoef(uplift[:, a], effect[:, a])[0, 1] > 0.7
        assert uplift[:, a].mean() == pytest.approx(effect[:, a].mean(), abs=0.03)
