"""Baseline policies a decision policy is measured against (benchmarks, the training report).

- ``risk_sorted``: the V1 rule: call the riskiest customers, e-mail when calls run out, within
  the budget and capacity, on the same eligibility as the policy.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from policies.allocation import enforce_limits
from policies.catalog import Catalog

__all__ = ["risk_sorted"]


def risk_sorted(
    p_churn: NDArray[np.float64],
    eligible: NDArray[np.bool_],
    cost: NDArray[np.float64],
    budget: float,
    caps: NDArray[np.float64],
    catalog: Catalog,
) -> NDArray[np.int64]:
    """Per customer the action index (0: none) the V1 rule picks, riskiest first."""
    call, email = catalog.index("account_manager_call"), catalog.index("retention_email")
    wanted = np.where(eligible[:, call], call, np.where(eligible[:, email], email, 0))
    first = enforce_limits(wanted, p_churn, cost, budget, caps)
    bumped = (wanted == call) & (first == 0) & eligible[:, email]  # calls ran out: email instead
    second = np.where(bumped, email, 0)
    left = budget - cost[np.arange(len(p_churn)), first].sum()
    chosen: NDArray[np.int64] = np.where(
        first != 0, first, enforce_limits(second, p_churn, cost, left, caps)
    )
    return chosen
