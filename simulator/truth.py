"""The ground truth: what any policy's decisions really earn, and the oracle at a given budget.

Scores use each customer's realized potential outcomes (known exactly in the simulator):
incremental retained value = sum over customers of (retained under the chosen action - retained
under do_nothing) x contract value; incremental revenue likewise for expansion revenue; wasted
spend is the spend on customers whose true incremental value is <= 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict
from scipy.stats import rankdata

from policies.allocation import Capacity, allocate_dual
from policies.catalog import CHANNELS
from policies.decide import Scores
from policies.errors import BudgetError, ConfigError
from policies.rules import ContactState
from simulator.world import World

__all__ = [
    "PolicyScore",
    "contact_state",
    "expected_gain_from_frame",
    "noisy_scores",
    "oracle_policy",
    "realized_gain",
    "realized_gain_from_frame",
    "score_policy",
]


class PolicyScore(BaseModel):
    """What a set of decisions truly earned."""

    model_config = ConfigDict(frozen=True)

    n_treated: int
    spend: float
    incremental_retained_value: float
    incremental_revenue: float
    net_value: float
    wasted_spend: float
    wasted_spend_share: float
    saves: int
    sleeping_dogs_woken: int


def realized_gain(world: World) -> NDArray[np.float64]:
    """Realized incremental value of each action vs do_nothing, before cost [customer, action]."""
    return _gain(world.retained.astype(np.float64), world.expansion, world.value)


def _gain(
    retained: NDArray[np.float64], expansion: NDArray[np.float64], value: NDArray[np.float64]
) -> NDArray[np.float64]:
    retention = (retained - retained[:, :1]) * value[:, None]
    return retention + (expansion - expansion[:, :1])


def score_policy(world: World, choice: NDArray[np.int64]) -> PolicyScore:
    """Score a chosen action index per customer (0 = do_nothing) against the ground truth."""
    if choice.shape != (world.n,):
        raise ConfigError(
            f"choice must have one action per customer ({world.n}), got {choice.shape}"
        )
    if choice.min(initial=0) < 0 or choice.max(initial=0) >= len(world.actions):
        raise ConfigError(
            f"choice holds an unknown action index (valid: 0..{len(world.actions) - 1})"
        )
    idx = np.arange(world.n)
    treated = choice != 0
    cost = world.cost[idx, choice]
    retained = world.retained[idx, choice].astype(int) - world.retained[:, 0].astype(int)
    retained_value = float((retained * world.value).sum())
    revenue = float((world.expansion[idx, choice] - world.expansion[:, 0]).sum())
    gain = realized_gain(world)[idx, choice]
    spend = float(cost.sum())
    wasted = float(cost[treated & (gain <= 0)].sum())
    return PolicyScore(
        n_treated=int(treated.sum()),
        spend=spend,
        incremental_retained_value=retained_value,
        incremental_revenue=revenue,
        net_value=retained_value + revenue - spend,
        wasted_spend=wasted,
        wasted_spend_share=wasted / spend if spend > 0 else 0.0,
        saves=int((retained > 0).sum()),
        sleeping_dogs_woken=int((retained < 0).sum()),
    )


def oracle_policy(
    world: World,
    budget: float,
    capacity: Capacity = None,
    eligible: NDArray[np.bool_] | None = None,
) -> NDArray[np.int64]:
    """The best decisions a policy that knew every potential outcome could make at this budget.

    It allocates the realized net gain (gain - cost) with the same allocator the engine
    uses (policies.allocation), so the oracle and the engine differ only in what they know.
    """
    if budget < 0:
        raise BudgetError(f"budget must be >= 0, got {budget}")
    net = realized_gain(world) - world.cost
    mask = np.ones_like(net, dtype=bool) if eligible is None else eligible
    return allocate_dual(net, world.cost, mask, budget, capacity)


def noisy_scores(world: World, noise: float = 0.5, seed: int = 0, keys: str = "batch") -> Scores:
    """What a model would say: the true expected effects plus noise, as the policy's input.

    ``noise`` is the noise standard deviation relative to each action's spread of true uplift
    (0 = perfect knowledge). Stands in for trained models until they exist, and lets a
    benchmark show how the policy's value degrades with model error.
    """
    if noise < 0:
        raise ConfigError(f"noise must be >= 0, got {noise}")
    rng = np.random.default_rng([seed, 99])
    p_churn = 1.0 - world.p_retain[:, 0]
    uplift = world.p_retain - world.p_retain[:, :1]
    expansion = world.expected_expansion - world.expected_expansion[:, :1]
    uplift_hat = uplift + rng.normal(size=uplift.shape) * noise * uplift.std(axis=0)
    # Expansion error scales with the account's size: a model errs in dollars of that account.
    relative = expansion / np.maximum(world.value, 1.0)[:, None]
    expansion_noise = rng.normal(size=expansion.shape) * noise * relative.std(axis=0)
    expansion_hat = expansion + expansion_noise * world.value[:, None]
    churn_hat = np.clip(p_churn + rng.normal(size=p_churn.shape) * noise * p_churn.std(), 0.0, 1.0)
    uplift_hat[:, 0] = expansion_hat[:, 0] = 0.0
    ids = world.customers["customer_id"].astype(str).tolist()
    logins = world.customers["logins_30d"].to_numpy(float) / world.customers["seats"].to_numpy(
        float
    )
    return Scores(
        customer_ids=ids,
        decision_keys=[f"{keys}:{c}" for c in ids],
        p_churn=churn_hat,
        uplift_retention=np.clip(uplift_hat, -1.0, 1.0),
        uplift_expansion=expansion_hat,
        customer_value=world.value.copy(),
        engagement=rankdata(logins) / logins.size,
    )


def contact_state(world: World) -> ContactState:
    """Customers never contacted yet, with the consent flags of their snapshot."""
    consent = np.column_stack(
        [world.customers[f"consent_{channel}"].to_numpy(bool) for channel in CHANNELS]
    )
    return ContactState.fresh(world.n, consent)


def expected_gain_from_frame(
    truth: pd.DataFrame, customer_ids: pd.Series, actions: tuple[str, ...]
) -> NDArray[np.float64]:
    """True expected gain before cost per [customer, action] from a written truth frame: the
    expected retention and expansion under each action against do_nothing."""
    rows = truth.set_index("customer_id").loc[customer_ids.to_numpy()]
    p_retain = rows[[f"p_retain__{a}" for a in actions]].to_numpy(np.float64)
    expansion = rows[[f"expected_expansion__{a}" for a in actions]].to_numpy(np.float64)
    return _gain(p_retain, expansion, rows["contract_value"].to_numpy(np.float64))


def realized_gain_from_frame(
    truth: pd.DataFrame, customer_ids: pd.Series, actions: tuple[str, ...]
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """(realized gain before cost, cost) per [customer, action] from a written truth frame."""
    rows = truth.set_index("customer_id").loc[customer_ids.to_numpy()]
    retained = rows[[f"retained__{a}" for a in actions]].to_numpy(np.float64)
    expansion = rows[[f"expansion__{a}" for a in actions]].to_numpy(np.float64)
    cost = rows[[f"cost__{a}" for a in actions]].to_numpy(np.float64)
    return _gain(retained, expansion, rows["contract_value"].to_numpy(np.float64)), cost
