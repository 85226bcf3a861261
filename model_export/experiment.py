"""A past campaign (experiment) of an import, aligned for learning: features, arm, outcome and
each row's propensity. ``nba campaign`` analyzes it (feedback.campaign); ``nba train --project``
learns the served models from it (model_export.project_models). A project's declared event
features are computed from the import's events as of each customer's assignment time, by the
same batch executor (features.event_features) whose semantics the worker's live windows follow.

Propensities: a logged propensity is used as given. Without one, the arms are tested for
randomization (how well a cross-validated logistic regression predicts the arm from the features,
as a one-vs-rest ROC AUC): below ``RANDOM_AUC`` each row's propensity is taken as its arm's share,
and the report says so; above, the propensity is estimated by that model, and the analysis refuses
when some customers had almost no chance of some arm (no overlap: nothing can be learned there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from features.event_features import event_features
from ingest.importer import imported_table
from ingest.project import CONTROL, Project
from model_export.design import DesignMatrix
from policies.errors import SchemaError

__all__ = ["MIN_PROPENSITY", "RANDOM_AUC", "Campaign", "load_campaign"]

Floats = NDArray[np.float64]
RANDOM_AUC = 0.55  # arms predictable from the features above this are not taken as randomized
MIN_PROPENSITY = 0.01  # an estimated propensity below this: no overlap, the analysis refuses


@dataclass(frozen=True)
class Campaign:
    """A past campaign's rows, aligned: features, arm (0 = control), outcome, propensity."""

    project: Project
    frame: pd.DataFrame  # experiments joined to customers, one row per customer
    actions: tuple[str, ...]  # control first, then the actions present, in catalog order
    treatment: NDArray[np.int64]
    outcome: str
    binary: bool
    y: Floats
    propensity: Floats
    propensity_note: str
    design: DesignMatrix  # fitted on ``frame`` (the encoding learns no outcome)
    x: NDArray[np.float32]  # the design matrix of ``frame``


def _arm_probabilities(x: NDArray[np.float32], treatment: NDArray[np.int64]) -> Floats:
    """Cross-validated probabilities of each arm given the features (standardized first: the
    features' scales differ by orders of magnitude)."""
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1_000))
    probabilities: Floats = cross_val_predict(model, x, treatment, cv=5, method="predict_proba")
    return probabilities


def _propensity(
    frame: pd.DataFrame, x: NDArray[np.float32], treatment: NDArray[np.int64]
) -> tuple[Floats, str]:
    if "propensity" in frame and frame["propensity"].notna().all():
        return frame["propensity"].to_numpy(float), "logged with each assignment"
    probabilities = _arm_probabilities(x, treatment)
    two_arms = probabilities.shape[1] == 2
    scores = probabilities[:, 1] if two_arms else probabilities
    auc = float(roc_auc_score(treatment, scores, multi_class="raise" if two_arms else "ovr"))
    if auc < RANDOM_AUC:
        shares = np.bincount(treatment) / treatment.size
        return shares[treatment], (
            f"not given: the features predict the arm with AUC {auc:.3f} < {RANDOM_AUC}, so the "
            "arms are taken as randomized and each row's propensity is its arm's share"
        )
    # Positivity: every customer must have had a chance of every arm, not only of their own.
    if probabilities.min() < MIN_PROPENSITY:
        raise SchemaError(
            f"the campaign's assignment was not random (the features predict the arm with AUC "
            f"{auc:.3f}) and some customers had almost no chance of an arm (estimated "
            f"propensity {probabilities.min():.4f} < {MIN_PROPENSITY}): no causal estimate is "
            "possible for them"
        )
    received = probabilities[np.arange(treatment.size), treatment]
    return received, (
        f"not given and the assignment was not random (AUC {auc:.3f} >= {RANDOM_AUC}): estimated "
        "by a cross-validated logistic regression of the arm on the features"
    )


def _with_event_features(frame: pd.DataFrame, project: Project, data: Path) -> pd.DataFrame:
    """The declared event features as of each customer's assignment: nothing the customer did
    at or after the decision time leaks into what the models learn from."""
    asked = pd.DataFrame({"customer_id": frame["customer_id"], "at": frame["assigned_at"]})
    computed = event_features(imported_table(data, "events"), asked, project.event_features)
    return frame.assign(**{c: computed[c].to_numpy() for c in computed.columns})


def load_campaign(data: Path, project: Project, outcome: str | None = None) -> Campaign:
    """The campaign of an import: experiments joined to customers."""
    declared = project.declared_outcome().columns
    name = outcome or project.declared_outcome().name
    if name not in declared:
        raise SchemaError(f"unknown outcome {name!r}; the project declares {sorted(declared)}")
    experiments = imported_table(data, "experiments")
    frame = experiments.merge(imported_table(data, "customers"), on="customer_id", how="inner")
    if project.event_features:
        frame = _with_event_features(frame, project, data)
    present = set(frame["action"])
    if CONTROL not in present:
        raise SchemaError(f"the campaign has no control rows (action {CONTROL})")
    actions = tuple(a for a in project.action_names if a in present)
    treatment: NDArray[np.int64] = np.asarray(
        frame["action"].map({a: i for i, a in enumerate(actions)}), dtype=np.int64
    )
    design = DesignMatrix(project).fit(frame)
    x = design.transform(frame)
    propensity, note = _propensity(frame, x, treatment)
    return Campaign(
        project=project,
        frame=frame,
        actions=actions,
        treatment=treatment,
        outcome=name,
        binary=declared[name] == "binary",
        y=frame[name].to_numpy(float),
        propensity=propensity,
        propensity_note=note,
        design=design,
        x=x,
    )
