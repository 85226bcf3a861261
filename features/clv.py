"""Customer lifetime value on any transaction table, with a calibration / holdout check.

BG/NBD (how many more purchases, and whether the customer is still alive) and Gamma-Gamma (what
each purchase is worth), both from the ``lifetimes`` package (features/jobs.py says why this
one). Time is counted in ``unit_days``-day units (weeks by default) measured in days, and
purchases on the same day count once: the convention of Fader, Hardie & Lee, under which the
published CDNOW parameters are reproduced (tests/features/test_clv.py).

The check: the models are fitted on the calibration period only, then each customer's expected
repeat purchases in the holdout period are compared with what they did, per number of repeat
purchases in calibration (the papers' figure).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from policies.errors import SchemaError

__all__ = ["ClvFit", "fit_clv", "plot_calibration"]


@dataclass(frozen=True)
class ClvFit:
    bg_nbd: dict[str, float]  # r, alpha, a, b
    gamma_gamma: dict[str, float]  # p, q, v
    customers: pd.DataFrame  # customer_id, frequency, recency, T, p_alive, purchases, clv
    calibration: pd.DataFrame  # per calibration frequency: customers, predicted, actual
    unit_days: float
    months: int

    def summary(self) -> dict[str, Any]:
        clv = self.customers["clv"]
        return {
            "bg_nbd": self.bg_nbd,
            "gamma_gamma": self.gamma_gamma,
            "unit_days": self.unit_days,
            "customers": int(len(self.customers)),
            "clv_months": self.months,
            "clv_mean": float(clv.mean()),
            "clv_total": float(clv.sum()),
            "calibration": self.calibration.to_dict(orient="records"),
        }


def _naive(times: pd.Series) -> pd.Series:
    stamped = pd.to_datetime(times)
    return stamped.dt.tz_localize(None) if stamped.dt.tz is not None else stamped


def fit_clv(
    transactions: pd.DataFrame,
    calibration_end: datetime,
    observation_end: datetime | None = None,
    unit_days: float = 7.0,
    months: int = 12,
    monthly_discount: float = 0.01,
) -> ClvFit:
    """Fit on the purchases up to ``calibration_end``; check on those up to ``observation_end``
    (default: the last purchase). ``transactions``: customer_id, occurred_at, amount."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import calibration_and_holdout_data

    tx = transactions.assign(occurred_at=_naive(transactions["occurred_at"]))
    calibration_end_ts = pd.Timestamp(calibration_end).tz_localize(None)
    end = pd.Timestamp(observation_end).tz_localize(None) if observation_end else None
    end = end or tx["occurred_at"].max().normalize()
    if not tx["occurred_at"].min() < calibration_end_ts < end:
        raise SchemaError(
            f"the calibration end {calibration_end_ts.date()} must fall inside the purchases "
            f"({tx['occurred_at'].min().date()} to {end.date()})"
        )
    data = calibration_and_holdout_data(
        tx,
        "customer_id",
        "occurred_at",
        calibration_period_end=calibration_end_ts,
        observation_period_end=end,
        freq="D",
        monetary_value_col="amount",
    )
    recency, age = data["recency_cal"] / unit_days, data["T_cal"] / unit_days
    frequency = data["frequency_cal"]
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(frequency, recency, age)
    # Gamma-Gamma needs a positive mean spend: repeat buyers whose purchases were all free
    # (CDNOW has $0 rows) stay out of its fit; their value is its conditional expectation
    # given a mean spend of 0, which shrinks toward the population's.
    repeat = data[(frequency > 0) & (data["monetary_value_cal"] > 0)]
    if repeat.empty:
        raise SchemaError("no customer bought twice in the calibration period: no Gamma-Gamma fit")
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(
        repeat["frequency_cal"], repeat["monetary_value_cal"]
    )
    holdout_units = float(data["duration_holdout"].iloc[0]) / unit_days
    predicted = bgf.conditional_expected_number_of_purchases_up_to_time(
        holdout_units, frequency, recency, age
    )
    clv = ggf.customer_lifetime_value(
        bgf,
        frequency,
        recency,
        age,
        data["monetary_value_cal"],
        time=months,
        discount_rate=monthly_discount,
        freq="D" if unit_days == 1 else "W",
    )
    customers = pd.DataFrame(
        {
            "customer_id": data.index.astype(str),
            "frequency": frequency.to_numpy(),
            "recency": recency.to_numpy(),
            "T": age.to_numpy(),
            "p_alive": bgf.conditional_probability_alive(frequency, recency, age),
            "holdout_predicted": predicted.to_numpy(),
            "holdout_actual": data["frequency_holdout"].to_numpy(),
            "clv": clv.to_numpy(np.float64),
        }
    )
    return ClvFit(
        bg_nbd={k: float(v) for k, v in bgf.params_.items()},
        gamma_gamma={k: float(v) for k, v in ggf.params_.items()},
        customers=customers,
        calibration=_calibration_table(customers),
        unit_days=unit_days,
        months=months,
    )


def _calibration_table(customers: pd.DataFrame, top: int = 7) -> pd.DataFrame:
    """Mean predicted and actual holdout purchases per calibration frequency (``top``+ pooled)."""
    bucket = customers["frequency"].clip(upper=top).astype(int)
    grouped = customers.groupby(bucket)
    return pd.DataFrame(
        {
            "frequency": grouped.size().index,
            "customers": grouped.size().to_numpy(),
            "predicted": grouped["holdout_predicted"].mean().to_numpy(),
            "actual": grouped["holdout_actual"].mean().to_numpy(),
        }
    )


def plot_calibration(fit: ClvFit, path: Path) -> Path:
    """The papers' figure: predicted vs actual holdout purchases per calibration frequency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = fit.calibration
    figure, axes = plt.subplots(figsize=(6, 4))
    axes.plot(table["frequency"], table["actual"], "o-", label="actual")
    axes.plot(table["frequency"], table["predicted"], "s--", label="BG/NBD prediction")
    labels = [str(f) for f in table["frequency"]]
    labels[-1] += "+"
    axes.set_xticks(table["frequency"], labels)
    axes.set_xlabel("repeat purchases in the calibration period")
    axes.set_ylabel("mean repeat purchases in the holdout")
    axes.set_title("Calibration / holdout check")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path
