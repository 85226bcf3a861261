"""Champion / challenger: a candidate model's policy valued off-policy on the engine's own log.

The log is the treatment and exploration decisions joined to their outcomes, with each logged
customer's features; the reward model is the logging (served) model's expected value. A
candidate decides over the same customers at the logged spend, choosing only among the actions
that were available at each decision (``capacity_exhausted:<action>`` reasons), and is valued
with IPS, SNIPS and doubly robust estimates (``feedback.ope``). A challenger is promoted only if
its DR value per decision beats the champion's by a margin with the paired CI above zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel

from feedback.ope import Estimate, OffPolicyLog, compare, evaluate_policy
from feedback.readout import with_features
from model_export.features import feature_matrix
from model_export.manifest import Registry
from model_export.serving import BundleScorer, score_all
from policies.arms import ArmConfig
from policies.catalog import Catalog
from policies.decide import CAPACITY_EXHAUSTED, Decisions, PolicyConfig
from policies.errors import ConfigError, ModelManifestError
from policies.value import expected_value

__all__ = [
    "OffPolicyData",
    "Promotion",
    "candidate_decisions",
    "evaluate_candidates",
    "off_policy_log",
    "promote_if_better",
]


@dataclass(frozen=True)
class OffPolicyData:
    """The treatment and exploration decisions with features, aligned row by row."""

    log: OffPolicyLog
    snapshot: pd.DataFrame  # the logged customers' features, one row per decision
    spend: float
    # [decision, action]: actions that had run out when the decision was made. The logging
    # policy could not choose them, so a candidate replayed on this log may not either: its
    # value there could only come from the reward model, unchecked by any outcome.
    unavailable: NDArray[np.bool_]


def off_policy_log(
    joined: pd.DataFrame, snapshot: pd.DataFrame, logging_model: BundleScorer, catalog: Catalog
) -> OffPolicyData:
    """Rewards (retained contract value + expansion revenue - cost) of the logged decisions,
    and a reward model from the logging model's scores: value x (1 - p_churn) + EV(action)."""
    rows, frame = with_features(joined[joined["arm"].isin(["treatment", "explore"])], snapshot)
    if rows.empty:
        raise ConfigError(
            "no treatment or exploration decision with outcomes has features in the snapshot"
        )
    names = list(catalog.names)
    action = np.asarray(rows["action"].map(names.index), dtype=np.int64)
    reward = (
        rows["retained"].to_numpy(float) * rows["value"].to_numpy(float)
        + rows["expansion"].to_numpy(float)
        - rows["cost"].to_numpy(float)
    )
    log = OffPolicyLog(
        action,
        rows["propensity"].to_numpy(float),
        reward,
        _reward_model(frame, logging_model, catalog),
    )
    return OffPolicyData(
        log, frame, float(rows["cost"].sum()), _unavailable(rows["reasons"], catalog)
    )


def _unavailable(reasons: pd.Series, catalog: Catalog) -> NDArray[np.bool_]:
    """[decision, action]: the `capacity_exhausted:<action>` reasons of each decision."""
    column = {f"{CAPACITY_EXHAUSTED}:{name}": k for k, name in enumerate(catalog.names)}
    mask = np.zeros((len(reasons), len(catalog.names)), dtype=bool)
    for row, codes in enumerate(reasons):
        for code in list(codes) if codes is not None else []:
            if code in column:
                mask[row, column[code]] = True
    return mask


def _reward_model(
    frame: pd.DataFrame, scorer: BundleScorer, catalog: Catalog
) -> NDArray[np.float64]:
    """Expected reward per [customer, action]: value x (1 - p_churn) + EV(action)."""
    p_churn, uplift, expansion_share = scorer.predict(feature_matrix(frame))
    value = frame["contract_value"].to_numpy(np.float64)
    ev = expected_value(
        np.clip(uplift, -1.0, 1.0),
        expansion_share * value[:, None],
        value,
        catalog.cost_matrix(value),
    )
    return (value * (1.0 - p_churn))[:, None] + ev


def candidate_decisions(
    data: OffPolicyData, scorer: BundleScorer, catalog: Catalog, budget: float
) -> Decisions:
    """A candidate's treatment policy alone (no holdout, no exploration) over the logged
    customers, choosing only among the actions that were available at each decision."""
    policy = PolicyConfig(catalog=catalog, arms=ArmConfig(holdout_share=0.0, explore_share=0.0))
    return score_all(data.snapshot, scorer, policy, budget, unavailable=data.unavailable)


def evaluate_candidates(
    data: OffPolicyData,
    registry: Registry,
    catalog: Catalog,
    versions: dict[str, str],
    budget_factor: float = 1.0,
    alpha: float = 0.05,
) -> dict[str, dict[str, Estimate]]:
    """Each named model version's treatment policy at the logged spend x ``budget_factor``."""
    if budget_factor <= 0:
        raise ConfigError("--budget-factor must be > 0")
    found = {}
    for name, version in versions.items():
        scorer = BundleScorer(registry, catalog, version, threads=0)
        target = candidate_decisions(data, scorer, catalog, data.spend * budget_factor).action
        found[name] = evaluate_policy(data.log, target, alpha)
    return found


class Promotion(BaseModel):
    champion: str
    challenger: str
    champion_value: float
    challenger_value: float
    difference: float
    difference_ci: tuple[float, float]
    margin: float
    promoted: bool
    reason: str


def promote_if_better(
    registry: Registry,
    catalog: Catalog,
    data: OffPolicyData,
    challenger: str,
    margin: float,
    alpha: float = 0.05,
) -> Promotion:
    """Promote ``challenger`` only if its DR value per decision beats the champion's by more
    than ``margin`` dollars and the paired difference's CI lies above zero."""
    champion = registry.champion()
    if champion is None:
        raise ModelManifestError("no champion to compare with; promote one first")
    found = evaluate_candidates(
        data, registry, catalog, {"champion": champion, "challenger": challenger}, alpha=alpha
    )
    difference = compare(found["challenger"]["dr"], found["champion"]["dr"], alpha)
    wins = difference.value > margin and difference.ci_low > 0
    if wins:
        registry.promote(challenger)
    reason = (
        "won: DR difference above the margin with its CI above zero"
        if wins
        else f"kept the champion: DR difference {difference.value:+,.2f} "
        f"(CI {difference.ci_low:+,.2f} .. {difference.ci_high:+,.2f}) vs margin {margin:,.2f}"
    )
    return Promotion(
        champion=champion,
        challenger=challenger,
        champion_value=found["champion"]["dr"].value,
        challenger_value=found["challenger"]["dr"].value,
        difference=difference.value,
        difference_ci=(difference.ci_low, difference.ci_high),
        margin=margin,
        promoted=wins,
        reason=reason,
    )
