"""What a project's policy would have earned on a past campaign, valued off-policy on the
campaign's own randomized log (`nba ope --project`, and the held-out figures of `nba train
--project`).

The candidate is the served policy itself: the model's scores, the project's catalog, consent and
contact rules, allocated under a budget of ``budget_factor`` times what the campaign spent on the
same customers (no holdout or exploration: the campaign's control arm plays that part). It is
valued in two currencies, per customer:

- **outcome**: the outcome's mean (e.g. the visit rate, or spend per customer);
- **net value**: a binary outcome times the customer's value, or a continuous one as it is, minus
  the cost of the action: the quantity the policy maximizes.

IPS, SNIPS and DR come from ``feedback.ope``; DR's reward model is the served model itself
(P(response | no action) plus each action's uplift), so the DR estimate stays consistent when
that model is wrong, as long as the logged propensities are right. Beside the policy: the
campaign as it ran (its plain mean), nobody treated, everyone given each action, and a random
choice of as many customers as the policy treats.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from feedback.ope import OffPolicyLog, evaluate_policy
from ingest.project import Project
from model_export.experiment import Campaign
from model_export.project_serving import contact_state, project_scores
from model_export.serving import Predictions
from policies.arms import ArmConfig
from policies.decide import decide_batch
from policies.errors import ModelManifestError

__all__ = ["project_policy_value"]

Floats = NDArray[np.float64]


def project_policy_value(
    campaign: Campaign,
    project: Project,
    rows: NDArray[np.int64],
    predictions: Predictions,
    budget_factor: float = 1.0,
    alpha: float = 0.05,
    seed: int = 0,
    clv: pd.DataFrame | None = None,
) -> dict[str, Any]:
    """``predictions`` are the model's for ``campaign.frame`` rows ``rows``; ``clv`` the CLV
    job's output when the project values customers by CLV."""
    c = campaign
    policy = project.policy_config(ArmConfig(holdout_share=0.0, explore_share=0.0))
    if policy.catalog.names != c.actions:
        raise ModelManifestError(
            f"the campaign's actions {c.actions} differ from the catalog's {policy.catalog.names}"
        )
    customers = c.frame.iloc[rows]
    scores = project_scores(customers, project, predictions, clv)
    value, logged = scores.customer_value, c.treatment[rows]
    cost = policy.catalog.cost_matrix(value)
    index = np.arange(rows.size)
    budget = budget_factor * float(cost[index, logged].sum())
    state = contact_state(project, customers)
    chosen = decide_batch(scores, state, policy, budget).action
    p_none, uplift, expansion = predictions
    y = c.y[rows]
    if c.binary:
        outcome_model = np.clip((1.0 - p_none)[:, None] + uplift, 0.0, 1.0)
        worth = value[:, None] * outcome_model
        net_reward = y * value - cost[index, logged]
    else:
        outcome_model = y[logged == 0].mean() + expansion
        worth = outcome_model
        net_reward = y - cost[index, logged]
    logs = {
        "outcome": OffPolicyLog(logged, c.propensity[rows], y, outcome_model),
        "net_value": OffPolicyLog(logged, c.propensity[rows], net_reward, worth - cost),
    }
    targets = _targets(chosen, c.actions, np.random.default_rng(seed))
    return {
        "rows": int(rows.size),
        "budget": budget,
        "budget_factor": budget_factor,
        "policy_spend": float(cost[index, chosen].sum()),
        "policy_treated": int((chosen != 0).sum()),
        "campaign_as_run": {
            "outcome": float(y.mean()),
            "net_value": float(net_reward.mean()),
            "spend": float(cost[index, logged].sum()),
        },
        "policies": {
            name: {
                currency: {k: e.summary() for k, e in evaluate_policy(log, target, alpha).items()}
                for currency, log in logs.items()
            }
            for name, target in targets.items()
        },
    }


def _targets(
    chosen: NDArray[np.int64], actions: tuple[str, ...], rng: np.random.Generator
) -> dict[str, NDArray[np.int64]]:
    n = chosen.size
    treated = int((chosen != 0).sum())
    random = np.zeros(n, dtype=np.int64)
    picked = rng.choice(n, size=treated, replace=False)
    random[picked] = rng.integers(1, len(actions), size=treated)
    targets = {"model policy": chosen, f"random: {treated:,} customers": random}
    targets["nobody"] = np.zeros(n, dtype=np.int64)
    for a in range(1, len(actions)):
        targets[f"everyone: {actions[a]}"] = np.full(n, a, dtype=np.int64)
    return targets
