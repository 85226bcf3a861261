"""What a past campaign earned and whom it moved, from an imported data set (`nba campaign`).

Input: an import (``nba data import``) with a customers table and an experiments table: each
customer's action (or the control, ``do_nothing``), assignment time, outcome(s) and, when known,
the propensity of the action received. Output, per action against the control:

- **ATE** with a 95% interval: the (propensity-weighted) difference of the arm means, by
  statsmodels' ``CompareMeans`` (Welch). With randomized arms the weights are constant within an
  arm and the ATE is exactly the difference of the arm means.
- **Model quality on a held-out 30%**: Qini, AUUC and uplift@30% (scikit-uplift) with percentile
  bootstrap intervals (``scipy.stats.bootstrap``, paired resampling of the held-out rows).
- **CATE by segment**: for each level of each categorical or boolean feature, the difference of
  the arm means with its interval, and the model's mean predicted uplift there.
- **Policy value** of treating the top 10/30/50% by predicted uplift (each with its best
  action), against treating everyone and against a random choice of the same share: IPS, SNIPS
  and DR on the held-out rows of the randomized log (``feedback.ope``), with intervals.
- **Response types** (persuadable, sure thing, lost cause, sleeping dog) from the predicted
  outcomes with and without each action, counted per logged arm (binary outcomes).
- On request, **robustness** (feedback.robustness): refutation tests of the ATE, and every
  learner's held-out Qini beside EconML's causal forest.

Propensities: a logged propensity is used as given. Without one, the arms are tested for
randomization (how well a cross-validated logistic regression predicts the arm from the features,
as a one-vs-rest ROC AUC): below ``RANDOM_AUC`` each row's propensity is taken as its arm's share,
and the report says so; above, the propensity is estimated by that model, and the analysis refuses
when some customers had almost no chance of some arm (no overlap: nothing can be learned there).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import bootstrap
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from feedback.ope import OffPolicyLog, evaluate_policy
from feedback.robustness import compare_learners, refute
from ingest.importer import imported_table
from ingest.project import CONTROL, FeatureKind, Project
from model_export.design import DesignMatrix
from model_export.evaluation import quiet_sklift, response_types, uplift_report
from model_export.learners import Kind, UpliftLearner, base_model, make_learner, model_output
from policies.errors import SchemaError

__all__ = ["RANDOM_AUC", "Campaign", "analyze_campaign", "load_campaign"]

Floats = NDArray[np.float64]
RANDOM_AUC = 0.55  # arms predictable from the features above this are not taken as randomized
MIN_PROPENSITY = 0.01  # an estimated propensity below this: no overlap, the analysis refuses
MIN_ROWS_PER_ARM = 30  # a segment's arm with fewer rows gets no CATE
SHARES = (0.1, 0.3, 0.5)


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
    x: NDArray[np.float32]  # the design matrix of ``frame`` (model_export.design)


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


def load_campaign(data: Path, project: Project, outcome: str | None = None) -> Campaign:
    """The campaign of an import: experiments joined to customers."""
    declared = project.declared_outcome().columns
    name = outcome or project.declared_outcome().name
    if name not in declared:
        raise SchemaError(f"unknown outcome {name!r}; the project declares {sorted(declared)}")
    experiments = imported_table(data, "experiments")
    frame = experiments.merge(imported_table(data, "customers"), on="customer_id", how="inner")
    present = set(frame["action"])
    if CONTROL not in present:
        raise SchemaError(f"the campaign has no control rows (action {CONTROL})")
    actions = tuple(a for a in project.action_names if a in present)
    treatment: NDArray[np.int64] = np.asarray(
        frame["action"].map({a: i for i, a in enumerate(actions)}), dtype=np.int64
    )
    x = DesignMatrix(project).fit(frame).transform(frame)
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
        x=x,
    )


def _difference(
    y: Floats, weight: Floats, treated: NDArray[np.bool_], control: NDArray[np.bool_]
) -> dict[str, float]:
    treated_stats = DescrStatsW(y[treated], weights=weight[treated])
    control_stats = DescrStatsW(y[control], weights=weight[control])
    low, high = CompareMeans(treated_stats, control_stats).tconfint_diff(usevar="unequal")
    return {
        "effect": float(treated_stats.mean - control_stats.mean),
        "ci_low": float(low),
        "ci_high": float(high),
        "mean_treated": float(treated_stats.mean),
        "mean_control": float(control_stats.mean),
        "n_treated": int(treated.sum()),
        "n_control": int(control.sum()),
    }


def _ate(c: Campaign) -> dict[str, dict[str, float]]:
    weight = 1.0 / c.propensity
    control = c.treatment == 0
    return {
        c.actions[a]: _difference(c.y, weight, c.treatment == a, control)
        for a in range(1, len(c.actions))
    }


def _metric_ci(
    metric: str, y: Floats, uplift: Floats, treated: NDArray[np.int64], seed: int
) -> tuple[float, float]:
    from sklift.metrics import qini_auc_score, uplift_at_k, uplift_auc_score

    functions = {
        "qini": lambda yy, uu, tt: qini_auc_score(yy, uu, tt),
        "auuc": lambda yy, uu, tt: uplift_auc_score(yy, uu, tt),
        "uplift_at_30": lambda yy, uu, tt: uplift_at_k(yy, uu, tt, strategy="overall", k=0.3),
    }
    with quiet_sklift():
        result = bootstrap(
            (y, uplift, treated),
            functions[metric],
            paired=True,
            vectorized=False,
            n_resamples=200,
            method="percentile",
            random_state=seed,
        )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


def _quality(
    c: Campaign, test: NDArray[np.int64], uplift: Floats, seed: int
) -> dict[str, dict[str, Any]]:
    y, t = c.y[test], c.treatment[test]
    report: dict[str, dict[str, Any]] = dict(uplift_report(y, t, uplift, c.actions))
    for a in range(1, len(c.actions)):
        rows = (t == a) | (t == 0)
        for metric in ("qini", "auuc", "uplift_at_30"):
            low, high = _metric_ci(
                metric, y[rows], uplift[rows, a], (t[rows] == a).astype(int), seed
            )
            report[c.actions[a]][f"{metric}_ci"] = [round(low, 5), round(high, 5)]
    return report


def _cate(c: Campaign, test: NDArray[np.int64], uplift: Floats) -> list[dict[str, Any]]:
    """Per level of each categorical or boolean feature, per action: the difference of arm means
    (all rows) and the model's mean predicted uplift (held-out rows)."""
    weight = 1.0 / c.propensity
    predicted = pd.DataFrame(uplift, index=c.frame.index[test], columns=list(c.actions))
    rows: list[dict[str, Any]] = []
    for feature in c.project.features:
        if feature.kind is FeatureKind.NUMERIC:
            continue
        levels = c.frame[feature.name].astype(str)
        for level in sorted(levels.unique()):
            inside = (levels == level).to_numpy()
            for a in range(1, len(c.actions)):
                treated, control = inside & (c.treatment == a), inside & (c.treatment == 0)
                if min(treated.sum(), control.sum()) < MIN_ROWS_PER_ARM:
                    continue
                held_out = predicted.index.isin(c.frame.index[inside])
                rows.append(
                    {
                        "feature": feature.name,
                        "level": level,
                        "action": c.actions[a],
                        **_difference(c.y, weight, treated, control),
                        "predicted_uplift": float(predicted.loc[held_out, c.actions[a]].mean()),
                    }
                )
    return rows


def _reward_model(
    c: Campaign,
    x: NDArray[np.float32],
    train: NDArray[np.int64],
    test: NDArray[np.int64],
    seed: int,
) -> Floats:
    """q(x, a) on the held-out rows: one tree model per arm, fitted on that arm's training rows
    (the doubly robust estimate's outcome model)."""
    kind: Kind = "classifier" if c.binary else "regressor"
    columns = []
    for a in range(len(c.actions)):
        rows = train[c.treatment[train] == a]
        model = base_model(kind, seed + a)
        model.fit(x[rows], c.y[rows].astype(int) if c.binary else c.y[rows])
        columns.append(model_output(model, x[test]))
    return np.column_stack(columns)


def _top_share_policy(uplift: Floats, share: float) -> NDArray[np.int64]:
    """The best action for the top ``share`` of customers by their best uplift; control else."""
    best = uplift[:, 1:].argmax(axis=1) + 1
    gain = uplift[:, 1:].max(axis=1)
    chosen = np.zeros(uplift.shape[0], dtype=np.int64)
    top = np.argsort(-gain, kind="stable")[: int(round(share * uplift.shape[0]))]
    chosen[top] = best[top]
    return chosen


def _policy_values(
    c: Campaign, test: NDArray[np.int64], uplift: Floats, q_hat: Floats, seed: int
) -> dict[str, dict[str, dict[str, float | int | str]]]:
    log = OffPolicyLog(
        action=c.treatment[test], propensity=c.propensity[test], reward=c.y[test], q_hat=q_hat
    )
    rng = np.random.default_rng(seed)
    n = test.size
    targets: dict[str, NDArray[np.int64]] = {"treat nobody": np.zeros(n, dtype=np.int64)}
    for a in range(1, len(c.actions)):
        targets[f"everyone: {c.actions[a]}"] = np.full(n, a, dtype=np.int64)
    for share in SHARES:
        targets[f"model: top {share:.0%}"] = _top_share_policy(uplift, share)
        random = np.zeros(n, dtype=np.int64)
        picked = rng.choice(n, size=int(round(share * n)), replace=False)
        random[picked] = rng.integers(1, len(c.actions), size=picked.size)
        targets[f"random: {share:.0%}"] = random
    return {
        name: {k: e.summary() for k, e in evaluate_policy(log, target).items()}
        for name, target in targets.items()
    }


def _response_types(
    c: Campaign, test: NDArray[np.int64], q_hat: Floats, uplift: Floats
) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    logged = pd.Series(np.asarray(c.actions)[c.treatment[test]], name="arm")
    for a in range(1, len(c.actions)):
        types = response_types(q_hat[:, 0], np.clip(q_hat[:, 0] + uplift[:, a], 0, 1))
        table = pd.crosstab(pd.Series(types, name="type"), logged)
        counts[c.actions[a]] = {
            arm: {str(k): int(v) for k, v in table[arm].items()} for arm in table.columns
        }
    return counts


def analyze_campaign(
    campaign: Campaign, learner: str = "s", seed: int = 0, robustness: bool = False
) -> dict[str, Any]:
    """The whole report (a JSON-ready mapping); with ``robustness``, also the refutation tests
    and the learner comparison (feedback.robustness: a minute or so on 64,000 customers)."""
    c = campaign
    x = c.x
    rows = np.arange(c.y.size)
    train, test = train_test_split(rows, test_size=0.3, stratify=c.treatment, random_state=seed)
    model: UpliftLearner = make_learner(
        learner, len(c.actions), "classifier" if c.binary else "regressor", seed
    )
    model.fit(x[train], c.treatment[train], c.y[train], c.propensity[train])
    uplift = model.predict_uplift(x[test])
    q_hat = _reward_model(c, x, train, test, seed)
    report: dict[str, Any] = {
        "project": c.project.name,
        "outcome": c.outcome,
        "rows": int(c.y.size),
        "actions": list(c.actions),
        "propensity": c.propensity_note,
        "learner": learner,
        "ate": _ate(c),
        "held_out": _quality(c, test, uplift, seed),
        "cate": _cate(c, test, uplift),
        "policy_value": _policy_values(c, test, uplift, q_hat, seed),
    }
    if c.binary:
        report["response_types"] = _response_types(c, test, q_hat, uplift)
    if robustness:
        report["refutations"] = refute(c, seed)
        report["learners_qini"] = compare_learners(c, train, test, seed, {learner: uplift})
    return report
