"""`nba campaign`: a past campaign's effects, from an import; on Hillstrom's real experiment and
on small made-up campaigns whose assignment is known."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from feedback.campaign import analyze_campaign
from ingest.importer import import_project
from ingest.project import Project, load_project
from model_export.experiment import load_campaign
from model_export.learners import LEARNERS
from policies.errors import SchemaError


def test_hillstrom_ate_is_the_difference_of_arm_means_and_the_womens_email_ranks(
    hillstrom_import: tuple[Project, Path],
) -> None:
    project, data = hillstrom_import
    report = analyze_campaign(load_campaign(data, project), learner="s", seed=0, robustness=True)
    assert report["propensity"] == "logged with each assignment"
    # The data set's README: visit 10.62% (no e-mail), 15.14% (womens), 18.28% (mens).
    mens, womens = report["ate"]["mens_email"], report["ate"]["womens_email"]
    assert mens["mean_control"] == pytest.approx(0.1062, abs=5e-5)
    assert mens["effect"] == pytest.approx(mens["mean_treated"] - mens["mean_control"])
    assert mens["effect"] == pytest.approx(0.1828 - 0.1062, abs=1e-4)
    assert womens["effect"] == pytest.approx(0.1514 - 0.1062, abs=1e-4)
    assert mens["ci_low"] < mens["effect"] < mens["ci_high"]
    assert womens["ci_high"] - womens["ci_low"] == pytest.approx(0.0073, abs=0.001)
    # STACK_NOTES: the Womens e-mail's visit uplift is rankable (Qini ~0.045 on a 30% split).
    low, high = report["held_out"]["womens_email"]["qini_ci"]
    assert low > 0 and report["held_out"]["womens_email"]["qini"] > 0.02
    levels = {(r["feature"], r["level"]) for r in report["cate"]}
    assert {("zip_code", "Rural"), ("channel", "Web"), ("newbie", "True")} <= levels
    values = report["policy_value"]
    assert values["everyone: mens_email"]["dr"]["value"] > values["treat nobody"]["dr"]["value"]
    types = report["response_types"]["womens_email"]
    assert sum(sum(arm.values()) for arm in types.values()) == round(0.3 * 64_000)
    for action, checks in report["refutations"].items():
        ate = report["ate"][action]["effect"]
        assert checks["adjusted_ate"] == pytest.approx(ate, abs=0.005)  # randomized: ~unadjusted
        assert checks["placebo_treatment"]["passes"]
        assert abs(checks["placebo_treatment"]["effect"]) < 0.01
        assert abs(checks["random_common_cause"]["change"]) < 0.001
        assert abs(checks["data_subset"]["mean"] - checks["adjusted_ate"]) < 0.005
    assert set(report["learners_qini"]) == {*LEARNERS, "econml_causal_forest"}
    assert report["learners_qini"]["econml_causal_forest"]["womens_email"] > 0.02


def _campaign(tmp_path: Path, seed: int, assignment: str) -> Path:
    """A made-up campaign of 3,000 customers; ``assignment`` 'random', 'leaning' (more likely
    treated as the score rises) or 'by_score' (treated exactly when the score is positive)."""
    rng = np.random.default_rng(seed)
    n = 3_000
    score = rng.normal(size=n)
    customers = pd.DataFrame({"customer_id": [f"c{i}" for i in range(n)], "score": score.round(4)})
    if assignment == "random":
        treated = rng.random(n) < 0.5
    elif assignment == "leaning":
        treated = rng.random(n) < 1 / (1 + np.exp(-score))
    else:
        treated = score > 0.0  # a deterministic rule: no overlap at all
    outcome = (rng.random(n) < 0.2 + 0.1 * treated).astype(int)
    experiments = pd.DataFrame(
        {
            "customer_id": customers["customer_id"],
            "arm": np.where(treated, "offer", "do_nothing"),
            "assigned_at": "2024-01-01",
            "bought": outcome,
        }
    )
    customers.to_csv(tmp_path / "customers.csv", index=False)
    experiments.to_csv(tmp_path / "campaign.csv", index=False)
    (tmp_path / "nba.yaml").write_text(
        "name: made_up\n"
        "sources:\n"
        "  customers: {path: customers.csv}\n"
        "  experiments: {path: campaign.csv, columns: {action: arm}}\n"
        "features: [{name: score, kind: numeric}]\n"
        "outcome: {name: bought, kind: binary}\n"
        "catalog: {actions: [{name: offer, channel: email, cost_fixed: 1}]}\n"
    )
    return tmp_path / "nba.yaml"


def test_without_propensities_a_random_campaign_is_said_to_be_taken_as_randomized(
    tmp_path: Path,
) -> None:
    project = load_project(_campaign(tmp_path, 1, "random"))
    import_project(project, tmp_path / "imported")
    campaign = load_campaign(tmp_path / "imported", project)
    assert "taken as randomized" in campaign.propensity_note
    shares = np.bincount(campaign.treatment) / campaign.treatment.size
    assert np.allclose(campaign.propensity, shares[campaign.treatment])


def test_without_propensities_a_rule_based_campaign_is_refused(tmp_path: Path) -> None:
    project = load_project(_campaign(tmp_path, 2, "by_score"))
    import_project(project, tmp_path / "imported")
    with pytest.raises(SchemaError, match="assignment was not random"):
        load_campaign(tmp_path / "imported", project)


def test_without_propensities_a_leaning_campaign_gets_estimated_ones(tmp_path: Path) -> None:
    project = load_project(_campaign(tmp_path, 3, "leaning"))
    import_project(project, tmp_path / "imported")
    campaign = load_campaign(tmp_path / "imported", project)
    assert "estimated by a cross-validated logistic regression" in campaign.propensity_note
    score = campaign.frame["score"].to_numpy()
    treated = campaign.treatment == 1
    true_propensity = np.where(treated, 1 / (1 + np.exp(-score)), 1 / (1 + np.exp(score)))
    assert np.abs(campaign.propensity - true_propensity).mean() < 0.03
