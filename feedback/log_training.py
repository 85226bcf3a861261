"""A training frame from the engine's own log: the randomized arms, as of each decision.

The holdout and exploration arms are the engine's running experiment. A customer's arm is a
stable hash, independent of everything the models see, and within its arm the action is
randomized with a known probability: the holdout always gets do_nothing, exploration picks
uniformly among the k actions allowed at that moment. The frame logs that within-arm design
probability as ``propensity`` (1 in the holdout, 1/k in exploration) beside the ``arm``, so
inverse-probability weighting is done per arm: within exploration, the mean over every explored
customer of ``[T = a] Y / propensity`` estimates an action's mean outcome over the customers it
was allowed to (exploration never offers a call without phone consent, so the log says nothing
of a call's effect on them).

An explored pick that a budget or capacity limit cut (policies.decide's enforce_limits) was
served as do_nothing and is logged `decision:limit_reached`, not `decision:explore`: it is not
the uniform draw its logged propensity describes (kept, it would over-represent do_nothing by
how often limits bit), so it is left out and counted; in the mean above it counts as a pick of
another action. Whether a limit bites depends on the batch, the pick's cost and its model score,
not on the customer's outcome.

The treatment arm's rows are left out: there the action is the policy's deterministic choice,
which says nothing about the actions it did not take. Given the features, the action is
randomized in every row kept, so an outcome-model learner (the pooled S-learner, S, T, X)
learns from the frame as from an experiment; learners that weight by a single propensity per
action (DR, the class transformation) are not offered on it (nba.commands.feedback).

k is not logged as such; it is recovered from an exploration decision's logged propensity
``t/(t+e) x [chosen == policy's pick] + e/(t+e) / k`` (policies.arms).

Features are joined as of each decision: per customer, the latest snapshot row whose
``snapshot_at`` is not after ``decided_at`` (a point-in-time join, pandas ``merge_asof``);
decisions older than every snapshot of their customer are dropped and counted.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from policies.arms import ArmConfig
from policies.catalog import Catalog
from policies.errors import ConfigError

__all__ = ["LogExperiment", "experiment_from_log"]

_RANDOMIZED_ARMS = ("holdout", "explore")
_CUT = "decision:limit_reached"


@dataclass(frozen=True)
class LogExperiment:
    frame: pd.DataFrame  # one row per randomized decision with its outcome and features
    holdout_rows: int
    explore_rows: int
    without_features: int  # randomized decisions with no snapshot as of their time
    explore_cut: int = 0  # explored picks a limit cut (served do_nothing): left out


def _design_probability(rows: pd.DataFrame, arms: ArmConfig) -> np.ndarray:
    """P(action | arm, customer): 1 in the holdout, 1/k in exploration."""
    e = arms.explore_share
    t = 1.0 - arms.holdout_share - e
    if e > t:
        # Then e/(t+e)/k may exceed t/(t+e), and a logged propensity no longer tells whether
        # the explored action was also the policy's pick.
        raise ConfigError(
            "the exploration share exceeds the treatment share; k cannot be recovered from the "
            "logged propensities"
        )
    logged = rows["propensity"].to_numpy(np.float64)
    exploring = (rows["arm"] == "explore").to_numpy()
    was_pick = logged > t / (t + e)  # with t >= e, e/(t+e)/k <= t/(t+e) < t/(t+e) + e/(t+e)/k
    uniform = logged - np.where(was_pick, t / (t + e), 0.0)
    k = np.rint((e / (t + e)) / np.maximum(uniform, 1e-12))
    return np.where(exploring, 1.0 / np.maximum(k, 1.0), 1.0)


def _as_of(decisions: pd.DataFrame, snapshots: pd.DataFrame) -> pd.DataFrame:
    left = decisions.assign(
        customer_id=decisions["customer_id"].astype(str),
        decided_at=pd.to_datetime(decisions["decided_at"], utc=True).dt.as_unit("ns"),
    ).sort_values("decided_at", kind="stable")
    right = snapshots.assign(
        customer_id=snapshots["customer_id"].astype(str),
        snapshot_at=pd.to_datetime(snapshots["snapshot_at"], utc=True).dt.as_unit("ns"),
    ).sort_values("snapshot_at", kind="stable")
    overlap = [c for c in right.columns if c in left.columns and c != "customer_id"]
    return pd.merge_asof(
        left,
        right.drop(columns=overlap),
        left_on="decided_at",
        right_on="snapshot_at",
        by="customer_id",
        direction="backward",
    )


def experiment_from_log(
    joined: pd.DataFrame, snapshots: pd.DataFrame, catalog: Catalog, arms: ArmConfig
) -> LogExperiment:
    """The randomized decisions of ``joined`` (decisions with outcomes, feedback.readout) as a
    training frame (model_export.training's columns): treatment, treatment_index, the arm and
    the within-arm design propensity, retained, expansion_revenue, contract_value and the
    features as of the decision; ``arms``: the shares the engine ran with."""
    if "snapshot_at" not in snapshots.columns:
        raise ConfigError("the feature snapshots need a snapshot_at column for an as-of join")
    rows = joined[joined["arm"].isin(_RANDOMIZED_ARMS)].reset_index(drop=True)
    cut = (rows["arm"] == "explore") & rows["reasons"].map(
        lambda codes: codes is not None and _CUT in list(codes)
    )
    rows = rows[~cut].reset_index(drop=True)
    unknown = sorted(set(rows["action"]) - set(catalog.names))
    if unknown:
        raise ConfigError(f"the log names actions the catalog does not know: {unknown}")
    rows = rows.assign(design_propensity=_design_probability(rows, arms))
    merged = _as_of(rows, snapshots)
    known = merged["snapshot_at"].notna()
    merged = merged[known].reset_index(drop=True)
    decision = {
        "action_id": merged["action_id"].astype(str),
        "arm": merged["arm"].astype(str),
        "decided_at": merged["decided_at"],
        "treatment": merged["action"].astype(str),
        "treatment_index": merged["action"].map(list(catalog.names).index).astype(np.int64),
        "propensity": merged["design_propensity"].astype(float),
        "retained": merged["retained"].astype(bool),
        "expansion_revenue": merged["expansion"].astype(float),
    }
    features = merged[[c for c in snapshots.columns if c in merged and c not in decision]]
    frame = pd.concat([pd.DataFrame(decision), features], axis=1)
    return LogExperiment(
        frame=frame,
        holdout_rows=int((rows["arm"] == "holdout").sum()),
        explore_rows=int((rows["arm"] == "explore").sum()),
        without_features=int((~known).sum()),
        explore_cut=int(cut.sum()),
    )
