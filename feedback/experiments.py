"""A/B design and readout for the holdout experiment (seed 000/003/004's randomized comparison).

Power and sample sizes come from statsmodels (``NormalIndPower``, ``proportion_effectsize``), the
tests and intervals from statsmodels too (``proportions_ztest``, Wilson ``proportion_confint``,
``confint_proportions_2indep``); nothing here re-derives a formula.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from sklearn.model_selection import train_test_split
from statsmodels.stats.power import NormalIndPower
from statsmodels.stats.proportion import (
    confint_proportions_2indep,
    proportion_confint,
    proportion_effectsize,
    proportions_ztest,
)

from policies.errors import ConfigError, SchemaError

__all__ = ["readout", "sample_size_per_arm", "stratified_assignment"]

STRATA = ("risk", "value", "tenure")


def sample_size_per_arm(
    baseline_rate: float, min_detectable_effect: float, alpha: float = 0.05, power: float = 0.8
) -> int:
    """Customers per arm to detect an absolute change of the rate (two-sided test)."""
    target = baseline_rate + min_detectable_effect
    if not 0 < baseline_rate < 1 or not 0 < target < 1:
        raise ConfigError(
            "baseline rate and baseline + effect must both lie strictly between 0 and 1"
        )
    if min_detectable_effect == 0:
        raise ConfigError("the minimum detectable effect must not be 0")
    if not 0 < alpha < 1 or not 0 < power < 1:
        raise ConfigError("alpha and power must lie strictly between 0 and 1")
    effect = abs(proportion_effectsize(target, baseline_rate))
    n = NormalIndPower().solve_power(
        effect_size=effect, alpha=alpha, power=power, ratio=1.0, alternative="two-sided"
    )
    return int(math.ceil(float(n)))


def readout(frame: pd.DataFrame, alpha: float = 0.05) -> dict[str, Any]:
    """Treatment vs holdout: retention per arm with Wilson CIs, absolute and relative lift with a
    CI, p-value, achieved power, spend, cost per save and ROI. ``frame`` has one row per decided
    customer: ``arm`` (treatment / holdout), ``retained`` (bool), ``cost`` and ``value``."""
    missing = [c for c in ("arm", "retained", "cost", "value") if c not in frame.columns]
    if missing:
        raise SchemaError(f"the readout needs column(s) {missing}")
    arms = {arm: frame[frame["arm"] == arm] for arm in ("treatment", "holdout")}
    empty = [arm for arm, rows in arms.items() if rows.empty]
    if empty:
        return {"status": "no data", "arms_without_data": empty}
    counts = np.array(
        [int(arms["treatment"]["retained"].sum()), int(arms["holdout"]["retained"].sum())]
    )
    sizes = np.array([len(arms["treatment"]), len(arms["holdout"])])
    rates = counts / sizes
    # Everyone retained (or nobody) in both arms: no difference to test, and no variance.
    degenerate = counts.sum() in (0, sizes.sum())
    p_value = 1.0 if degenerate else float(proportions_ztest(counts, sizes)[1])
    low, high = confint_proportions_2indep(
        counts[0], sizes[0], counts[1], sizes[1], method="wald", alpha=alpha
    )
    effect = abs(proportion_effectsize(rates[0], rates[1])) if 0 < rates[1] < 1 else 0.0
    achieved = (
        float(
            NormalIndPower().power(
                effect_size=effect, nobs1=sizes[0], alpha=alpha, ratio=sizes[1] / sizes[0]
            )
        )
        if effect > 0
        else 0.0
    )
    spend = float(arms["treatment"]["cost"].sum())
    saves = (rates[0] - rates[1]) * sizes[0]
    value_per_customer = float(arms["treatment"]["value"].mean())
    return {
        "status": "ok" if achieved >= 0.8 else "underpowered",
        "customers": {"treatment": int(sizes[0]), "holdout": int(sizes[1])},
        "retention": {
            arm: {
                "rate": float(rates[k]),
                "ci": [
                    float(v)
                    for v in proportion_confint(counts[k], sizes[k], alpha=alpha, method="wilson")
                ],
            }
            for k, arm in enumerate(("treatment", "holdout"))
        },
        "lift_abs": float(rates[0] - rates[1]),
        "lift_abs_ci": [float(low), float(high)],
        "lift_rel": float(rates[0] / rates[1] - 1.0) if rates[1] > 0 else None,
        "p_value": float(p_value),
        "achieved_power": achieved,
        "spend": spend,
        "incremental_saves": float(saves),
        "cost_per_save": spend / saves if saves > 0 else None,
        "roi": (saves * value_per_customer - spend) / spend if spend > 0 else None,
    }


def stratified_assignment(
    customer_ids: pd.Series,
    risk: pd.Series,
    value: pd.Series,
    tenure: pd.Series,
    holdout_share: float = 0.5,
    seed: int = 0,
) -> pd.DataFrame:
    """Treatment / holdout within each risk x value x tenure stratum (terciles of each), so the
    arms are balanced on what drives retention (seed 004). The split is scikit-learn's
    stratified ``train_test_split``; strata too small to split join their neighbours."""
    if not 0 < holdout_share < 1:
        raise ConfigError("the holdout share must lie strictly between 0 and 1")
    if len(customer_ids) < 4:
        raise ConfigError("a stratified assignment needs at least 4 customers")
    bins = {
        name: pd.qcut(column.rank(method="first"), 3, labels=["low", "mid", "high"])
        for name, column in zip(STRATA, (risk, value, tenure), strict=True)
    }
    stratum = (
        bins["risk"].astype(str)
        + " risk|"
        + bins["value"].astype(str)
        + " value|"
        + bins["tenure"].astype(str)
        + " tenure"
    )
    # A stratum needs one customer per arm at least; smaller ones are pooled.
    counts = stratum.map(stratum.value_counts())
    label = stratum.where(counts >= 2, "pooled small strata")
    if (label == "pooled small strata").sum() == 1:
        label = label.replace("pooled small strata", label.mode().iloc[0])
    rows = np.arange(len(customer_ids))
    _, held = train_test_split(
        rows, test_size=holdout_share, random_state=seed, stratify=label.to_numpy()
    )
    arm = np.full(len(rows), "treatment", dtype=object)
    arm[held] = "holdout"
    return pd.DataFrame(
        {"customer_id": customer_ids.to_numpy(), "stratum": stratum.to_numpy(), "arm": arm}
    )
