"""Incremental conversions per channel from a discrete-time additive hazard model, the one
attribution here that can tell a channel that causes conversions from one that follows intent.

Each customer is at risk of converting on each day from their first touch until they convert or
the log ends. The chance of converting on a day is modelled as a baseline set by the day's
context (unpaid touches such as site visits: none, one, two or more today, any yesterday) plus
an additive lift per paid touch of each channel that day:

    P(convert on day d) = baseline(context_d) + sum_c beta_c * touches_c,d

fitted by least squares on the customer-day panel (the additive hazard of Zhang et al., 2014,
"Multi-touch attribution in online advertising with survival theory", in discrete time). A
channel's incremental conversions are ``beta_c`` times its touches at risk. Retargeting that
follows visits is then compared with visits that were not retargeted, so it is paid only for
the conversions it adds; Markov and Shapley credit it with every conversion it precedes. It
needs the context in the log: when the signal a channel follows is not logged, no method that
reads the log can separate them (simulator/journeys.py, ``visits_logged``).

The panel is never built row by row: days with no touch, no conversion and no visit the day
before all share one design row, so the fit runs on the distinct rows with their counts
(weighted least squares, the same estimate as on the full panel). scikit-learn's
LinearRegression does the fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression

__all__ = ["additive_hazard", "unpaid_channels"]

_DAY = pd.Timedelta(days=1)


def unpaid_channels(touches: pd.DataFrame) -> tuple[str, ...]:
    """Channels none of whose touches cost anything (site visits, direct): the context."""
    spend = touches.groupby("channel")["cost"].sum()
    return tuple(sorted(str(c) for c in spend.index[spend == 0]))


def _days(times: pd.Series, origin: pd.Timestamp) -> np.ndarray:
    return ((times - origin) // _DAY).to_numpy(np.int64)


def _keyed_rows(
    usable: pd.DataFrame,
    buyers: pd.DataFrame,
    context: tuple[str, ...],
    origin: pd.Timestamp,
    window: pd.DataFrame,
) -> pd.DataFrame:
    """One row per (customer, day) at risk with a touch, a conversion or a visit the day
    before: each channel's touches that day, context counts the day before, and whether the
    customer converted. (customer, day) is one integer key: joins on strings are 20x slower.
    ``window``: ``_risk_window``, whose index orders the customers."""
    span = int(window["last"].max()) + 2  # room for the day after the last

    def keyed(customers: pd.Series, times: pd.Series) -> np.ndarray:
        code = window.index.get_indexer(pd.Index(customers)).astype(np.int64)
        key: np.ndarray = code * span + _days(times, origin)
        return key

    key = keyed(usable["customer_id"], usable["touched_at"])
    parts = [pd.DataFrame({"key": key, "column": usable["channel"].to_numpy()})]
    for channel in context:  # the day after a visit still carries it
        visited = (usable["channel"] == channel).to_numpy()
        parts.append(pd.DataFrame({"key": key[visited] + 1, "column": f"{channel}|yesterday"}))
    first = buyers.groupby("customer_id")["converted_at"].min()
    won = keyed(pd.Series(first.index), pd.Series(first.to_numpy()))
    parts.append(pd.DataFrame({"key": won, "column": "converted"}))
    rows = (
        pd.concat(parts, ignore_index=True)
        .groupby(["key", "column"])
        .size()
        .unstack("column", fill_value=0)
        .astype(float)
    )
    keys = rows.index.to_numpy()
    at_risk = keys % span <= window["last"].to_numpy()[keys // span]
    kept: pd.DataFrame = rows.loc[at_risk]
    return kept


def _risk_window(usable: pd.DataFrame, buyers: pd.DataFrame, origin: pd.Timestamp) -> pd.DataFrame:
    """Per touched customer, the first and last day at risk: first touch day through the
    conversion day, or the log's last day."""
    last = max(usable["touched_at"].max(), buyers["converted_at"].max())
    first_touch = usable.groupby("customer_id")["touched_at"].min()
    converted = buyers.groupby("customer_id")["converted_at"].min()
    end = converted.reindex(first_touch.index).fillna(last)
    return pd.DataFrame(
        {"first": _days(first_touch, origin), "last": _days(end, origin)}, index=first_touch.index
    )


def _design(rows: pd.DataFrame, paid: tuple[str, ...], context: tuple[str, ...]) -> pd.DataFrame:
    """Paid touch counts as they are; context as indicators (a baseline per context)."""
    design = pd.DataFrame({c: rows[c] if c in rows else 0.0 for c in paid}, index=rows.index)
    for channel in context:
        today = rows[channel] if channel in rows else pd.Series(0.0, index=rows.index)
        design[f"{channel}=1"] = (today == 1).astype(float)
        design[f"{channel}>=2"] = (today >= 2).astype(float)
        before = rows.get(f"{channel}|yesterday", pd.Series(0.0, index=rows.index))
        design[f"{channel}|yesterday"] = (before >= 1).astype(float)
    return design


def additive_hazard(
    usable: pd.DataFrame, conversions: pd.DataFrame, context: tuple[str, ...] = ()
) -> dict[str, float]:
    """Incremental conversions per paid channel (every channel not in ``context``) from the
    touches that can have caused a conversion (``models.usable_touches``)."""
    origin = usable["touched_at"].min().floor("D")
    buyers = conversions[conversions["customer_id"].isin(usable["customer_id"].unique())]
    window = _risk_window(usable, buyers, origin)
    rows = _keyed_rows(usable, buyers, context, origin, window)
    paid = tuple(sorted(set(usable["channel"]) - set(context)))
    design = _design(rows, paid, context)
    converted = rows["converted"] if "converted" in rows else pd.Series(0.0, index=rows.index)
    quiet = int((window["last"] - window["first"] + 1).sum()) - len(rows)  # days with nothing
    grouped = (
        design.assign(converted=converted)
        .groupby(list(design.columns), as_index=False)["converted"]
        .agg(["sum", "size"])
    )
    distinct = grouped[list(design.columns)].to_numpy(np.float64)
    features = np.vstack([distinct, np.zeros((1, distinct.shape[1]))])
    weights = np.append(grouped["size"].to_numpy(np.float64), quiet)
    rates = np.append(grouped["sum"].to_numpy(np.float64), 0.0) / weights
    fit = LinearRegression().fit(features, rates, sample_weight=weights)
    touches = usable[usable["channel"].isin(paid)].groupby("channel").size()
    return {c: float(fit.coef_[i] * touches.get(c, 0)) for i, c in enumerate(paid)}
