"""Attribution of conversions to channels, from journeys (customer_id, touched_at, channel) and
conversions (customer_id, converted_at), measured against known truth in the tests.

- ``paths``: each customer's channels in time order, touches at or after their conversion left
  out (they cannot have caused it), identical touches (same customer, time and channel) once.
- ``last_touch`` / ``first_touch``: the baselines, one conversion to one channel.
- ``markov``: the removal effect of a first-order Markov chain over the paths, computed by the
  maintained ``ChannelAttribution`` package (2.2.5).
- ``shapley``: exact Shapley values over channel coalitions with Zhao et al.'s (2018) game:
  ``v(S)`` is the number of conversions of journeys whose channel set lies within ``S``, so a
  channel is paid for the conversions it adds to coalitions without it. Exact by a
  sum-over-subsets pass, O(k 2^k) for k channels (k = 12: 49,152 steps); beyond about 20
  channels the 2^k coalitions no longer fit and a sampled (permutation) estimate is the way.

Every model returns the conversions credited to each channel; ``shares`` turns them into shares
and ``share_error`` is the mean absolute error of the shares against a truth.
"""

from __future__ import annotations

import contextlib
import io
from math import factorial

import numpy as np
import pandas as pd

__all__ = [
    "first_touch",
    "journeys_from",
    "last_touch",
    "markov",
    "paths",
    "shapley",
    "share_error",
    "shares",
    "usable_touches",
]


def usable_touches(
    touches: pd.DataFrame, conversions: pd.DataFrame
) -> tuple[pd.DataFrame, dict[str, int]]:
    """The touches that can have caused a conversion: identical touches (same customer, time and
    channel) once, none at or after the customer's first conversion; and how many of each kind
    were left out."""
    unique = touches.drop_duplicates(["customer_id", "touched_at", "channel"])
    when = unique["customer_id"].map(_first_conversions(conversions))
    before = unique[when.isna() | (unique["touched_at"] < when)]
    return before, {
        "duplicates": len(touches) - len(unique),
        "after_conversion": len(unique) - len(before),
    }


def journeys_from(usable: pd.DataFrame, conversions: pd.DataFrame) -> pd.DataFrame:
    """One row per customer touched: ``channels`` (tuple, in time order) and ``converted``."""
    ordered = usable.sort_values(["customer_id", "touched_at"], kind="stable")
    grouped = ordered.groupby("customer_id", sort=False)["channel"].agg(tuple)
    return pd.DataFrame(
        {
            "customer_id": grouped.index,
            "channels": grouped.to_numpy(),
            "converted": grouped.index.isin(_first_conversions(conversions).index),
        }
    ).reset_index(drop=True)


def paths(touches: pd.DataFrame, conversions: pd.DataFrame) -> pd.DataFrame:
    """The journeys of the usable touches (``usable_touches``, then ``journeys_from``)."""
    return journeys_from(usable_touches(touches, conversions)[0], conversions)


def _first_conversions(conversions: pd.DataFrame) -> pd.Series:
    return conversions.groupby("customer_id")["converted_at"].min()


def _single(journeys: pd.DataFrame, position: int) -> dict[str, float]:
    won = journeys.loc[journeys["converted"], "channels"]
    return {str(k): float(v) for k, v in won.map(lambda p: p[position]).value_counts().items()}


def last_touch(journeys: pd.DataFrame) -> dict[str, float]:
    return _single(journeys, -1)


def first_touch(journeys: pd.DataFrame) -> dict[str, float]:
    return _single(journeys, 0)


def markov(journeys: pd.DataFrame) -> dict[str, float]:
    """Removal effects of a first-order chain (ChannelAttribution), in conversions."""
    with contextlib.redirect_stdout(io.StringIO()):  # the package prints a banner on import
        import ChannelAttribution as channel_attribution  # noqa: N813

    joined = journeys["channels"].map(" > ".join)
    table = (
        pd.DataFrame({"path": joined, "conv": journeys["converted"].astype(int)})
        .assign(null=lambda f: 1 - f["conv"])
        .groupby("path", as_index=False)[["conv", "null"]]
        .sum()
    )
    with contextlib.redirect_stdout(io.StringIO()):
        result = channel_attribution.markov_model(
            table, "path", "conv", var_null="null", verbose=False, flg_pro=False
        )
    return {str(row.channel_name): float(row.total_conversions) for row in result.itertuples()}


def shapley(journeys: pd.DataFrame) -> dict[str, float]:
    """Exact Shapley values of the coalition game v(S) = conversions of journeys within S."""
    channels = sorted({c for p in journeys["channels"] for c in p})
    k = len(channels)
    bit = {c: 1 << i for i, c in enumerate(channels)}
    masks = journeys.loc[journeys["converted"], "channels"].map(
        lambda p: sum(bit[c] for c in set(p))
    )
    value = np.bincount(masks.to_numpy(np.int64), minlength=1 << k).astype(np.float64)
    for i in range(k):  # sum over subsets: value[S] becomes the conversions within S
        step = 1 << i
        for start in range(0, 1 << k, step << 1):
            value[start + step : start + (step << 1)] += value[start : start + step]
    sizes = np.array([bin(s).count("1") for s in range(1 << k)])
    weight = np.array([factorial(s) * factorial(k - s - 1) / factorial(k) for s in range(k)])
    credit = {}
    for i, channel in enumerate(channels):
        without = np.array([s for s in range(1 << k) if not s & (1 << i)])
        gain = value[without | (1 << i)] - value[without]
        credit[channel] = float((weight[sizes[without]] * gain).sum())
    return credit


def shares(credit: dict[str, float], channels: tuple[str, ...]) -> dict[str, float]:
    total = sum(max(credit.get(c, 0.0), 0.0) for c in channels) or 1.0
    return {c: max(credit.get(c, 0.0), 0.0) / total for c in channels}


def share_error(estimate: dict[str, float], truth: dict[str, float]) -> float:
    """Mean absolute error of the channels' credit shares."""
    return float(np.mean([abs(estimate.get(c, 0.0) - share) for c, share in truth.items()]))
