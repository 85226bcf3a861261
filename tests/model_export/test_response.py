"""The response model: cross-validated AUC with an interval, and the F1-chosen threshold."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ingest.project import load_project
from model_export.response import response_report
from nba.commands.response import response_of_import
from tests.ingest.test_public_datasets import EXAMPLES


def test_on_noise_the_auc_interval_holds_one_half() -> None:
    rng = np.random.default_rng(4)
    x = rng.normal(size=(1_500, 4)).astype(np.float32)
    y = (rng.random(1_500) < 0.2).astype(float)
    report = response_report(x, y, seed=0)
    for model in ("xgboost", "logistic"):
        low, high = report[model]["roc_auc_ci"]
        assert low < 0.5 < high, report[model]


def test_on_a_learnable_signal_the_matrix_matches_the_threshold() -> None:
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2_000, 3)).astype(np.float32)
    y = (rng.random(2_000) < 1 / (1 + np.exp(-(2 * x[:, 0] - 1.5)))).astype(float)
    r = response_report(x, y, seed=0)["logistic"]
    assert r["roc_auc_ci"][0] > 0.75
    (tn, fp), (fn, tp) = r["confusion"]["matrix"]
    assert tp + fn == int(y.sum()) and tn + fp == int((1 - y).sum())
    assert r["precision"] == tp / (tp + fp) and r["recall"] == tp / (tp + fn)


def test_customer_personality_response_with_and_without_personas(tmp_path: Path) -> None:
    from ingest.importer import import_project

    project = load_project(EXAMPLES / "customer_personality/nba.yaml")
    import_project(project, tmp_path)
    report = response_of_import(project, tmp_path, None, seed=0)
    for variant in ("without_personas", "with_personas"):
        auc = report[variant]["xgboost"]["roc_auc"]
        assert 0.80 < auc < 0.97, (variant, auc)
        assert report[variant]["responders"] == 334
