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

Propensities: see ``model_export.experiment`` (logged, taken as randomized, or estimated).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import bootstrap
from sklearn.model_selection import train_test_split
from statsmodels.stats.weightstats import CompareMeans, DescrStatsW

from feedback.ope import OffPolicyLog, evaluate_policy
from feedback.robustness import compare_learners, refute
from ingest.project import FeatureKind
from model_export.evaluation import quiet_sklift, response_types, uplift_report
from model_export.experiment import Campaign
from model_export.learners import Kind, UpliftLearner, base_model, make_learner, model_output

__all__ = ["analyze_campaign"]

Floats = NDArray[np.float64]
MIN_ROWS_PER_ARM = 30  # a segment's arm with fewer rows gets no CATE
SHARES = (0.1, 0.3, 0.5)


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
