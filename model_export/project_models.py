"""The served models of a project of one's own data (`nba train --project`), from its past
campaign (model_export.experiment).

- **Baseline**: P(no response | no action), XGBoost with Platt calibration (model_export.churn)
  on the control rows, where "no response" is an outcome of 0 (a binary outcome not reached, or
  no revenue). It feeds the segments' risk axis, as churn does for the simulated world.
- **Outcome uplift**: the chosen learner on the project's outcome, every action against the
  control, weighted by the logged (or assumed, or estimated) propensities. A binary outcome's
  uplift is in probability points and the policy multiplies it by the customer's value; a
  continuous one is in the outcome's own units (e.g. dollars of spend).
- **Evaluation** on a held-out 30% (stratified by arm): the baseline's classification metrics on
  control rows, Qini / AUUC / uplift@k per action.

The design matrix (model_export.design) is fitted on the campaign's customers and shipped with
the bundle, so that serving encodes a customer exactly as training did.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import train_test_split

from model_export.churn import ChurnModel
from model_export.design import DesignMatrix
from model_export.evaluation import classification_report, uplift_report
from model_export.experiment import Campaign
from model_export.learners import Kind, UpliftLearner, make_learner
from model_export.manifest import fingerprint
from model_export.serving import Predictions

__all__ = ["ProjectTrained", "gain_importance", "train_project"]


@dataclass
class ProjectTrained:
    project: str
    outcome: str
    binary: bool
    learner: str
    actions: tuple[str, ...]
    design: DesignMatrix
    churn: ChurnModel  # P(no response | no action): the bundle's p_churn output
    model: UpliftLearner
    fingerprint: str
    holdout_features: NDArray[np.float32]
    test_rows: NDArray[np.int64]  # the campaign's held-out rows (evaluation only)
    metrics: dict[str, Any] = field(default_factory=dict)
    curves: dict[str, Any] = field(default_factory=dict)

    def predict(self, x: NDArray[np.float32]) -> Predictions:
        """What the bundle will output, from the native models: (P(no response), uplift of a
        binary outcome, uplift of a continuous one); the outcome not modelled is zeros."""
        uplift = self.model.predict_uplift(x)
        zeros = np.zeros_like(uplift)
        if self.binary:
            return self.churn.predict_proba(x), uplift, zeros
        return self.churn.predict_proba(x), zeros, uplift

    @property
    def retention(self) -> UpliftLearner | None:
        """The learner behind the bundle's ``uplift`` output (binary outcomes)."""
        return self.model if self.binary else None

    @property
    def expansion(self) -> UpliftLearner | None:
        """The learner behind the bundle's ``expansion_uplift`` output (continuous outcomes)."""
        return None if self.binary else self.model


def train_project(
    campaign: Campaign, learner: str = "s", seed: int = 0, n_estimators: int = 200
) -> ProjectTrained:
    c = campaign
    rows = np.arange(c.y.size)
    train, test = train_test_split(rows, test_size=0.3, stratify=c.treatment, random_state=seed)
    no_response = c.y <= 0
    control = c.treatment == 0
    fit_control, test_control = train[control[train]], test[control[test]]
    baseline = ChurnModel(seed=seed, n_estimators=n_estimators).fit(
        c.x[fit_control], no_response[fit_control]
    )
    kind: Kind = "classifier" if c.binary else "regressor"
    model = make_learner(learner, len(c.actions), kind, seed, n_estimators).fit(
        c.x[train], c.treatment[train], c.y[train], c.propensity[train]
    )
    uplift = model.predict_uplift(c.x[test])
    p_none = baseline.predict_proba(c.x[test])
    names = c.design.names_
    metrics: dict[str, Any] = {
        "project": c.project.name,
        "rows": {"train": int(train.size), "test": int(test.size)},
        "outcome": {"name": c.outcome, "kind": "binary" if c.binary else "continuous"},
        "propensity": c.propensity_note,
        "no_response_baseline": classification_report(
            no_response[test_control], baseline.predict_proba(c.x[test_control])
        ),
        "uplift": uplift_report(c.y[test], c.treatment[test], uplift, c.actions),
        "feature_importance": gain_importance(baseline, names),
    }
    return ProjectTrained(
        project=c.project.name,
        outcome=c.outcome,
        binary=c.binary,
        learner=learner,
        actions=c.actions,
        design=c.design,
        churn=baseline,
        model=model,
        fingerprint=fingerprint(c.frame),
        holdout_features=c.x[test][:2_000],
        test_rows=np.asarray(test, dtype=np.int64),
        metrics=metrics,
        curves={
            "y": c.y[test],
            "treatment": c.treatment[test],
            "uplift": uplift,
            "p_churn": p_none,
            "control": c.treatment[test] == 0,
        },
    )


def gain_importance(churn: ChurnModel, names: tuple[str, ...]) -> dict[str, float]:
    """Each feature's share of the baseline model's total gain, largest first."""
    gains = churn.model_.get_booster().get_score(importance_type="gain")
    named = {names[int(k[1:])]: float(np.sum(v)) for k, v in gains.items()}
    total = sum(named.values()) or 1.0
    return {k: round(v / total, 4) for k, v in sorted(named.items(), key=lambda kv: -kv[1])}
