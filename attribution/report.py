"""What each channel earned (`nba attribution`): credited conversions, cost per conversion and
ROI with bootstrap intervals, and a budget split, from touches and conversions.

Input rules (counted in the output, never silent):
- a channel none of whose touches cost anything (site visits, direct) is context, not a channel
  to credit: the hazard model reads it, the path models leave it out;
- a touch of a paid channel outside ``channels`` (when given) is left out;
- a touch at or after its customer's first conversion is left out (it cannot have caused it);
- repeated touches (same customer, time and channel) count once;
- a conversion without any touch is organic: in the totals, nobody's credit.

Credit comes from one model: ``hazard`` by default (attribution/hazard.py: incremental
conversions, the only one of these that is not fooled by channels that follow intent, as long as
the intent signal is logged), or ``markov``, ``shapley``, ``last_touch``, ``first_touch``
(attribution/models.py). The intervals are percentile bootstrap intervals over customers
(``rounds`` resamples of the touched customers). A channel's value is its
credited conversions times the mean conversion value; its ROI is (value - spend) / spend. The
budget split gives each channel with a positive ROI a share proportional to its value per dollar:
a first-order rule from average returns, not an optimizer of marginal returns (which would need
each channel's response to more spend, which attribution of past journeys cannot give).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from attribution.hazard import additive_hazard, unpaid_channels
from attribution.models import (
    first_touch,
    journeys_from,
    last_touch,
    markov,
    shapley,
    shares,
    usable_touches,
)
from attribution.sequence import sequence_attribution
from policies.errors import SchemaError

__all__ = ["MODELS", "attribute"]

Credit = Callable[[pd.DataFrame, pd.DataFrame, tuple[str, ...]], dict[str, float]]


def _on_paths(model: Callable[[pd.DataFrame], dict[str, float]]) -> Credit:
    """A model of paths, given the paid touches only (the context channels are not credited)."""

    def credit(
        usable: pd.DataFrame, conversions: pd.DataFrame, context: tuple[str, ...]
    ) -> dict[str, float]:
        paid = usable[~usable["channel"].isin(context)]
        return model(journeys_from(paid, conversions))

    return credit


MODELS: dict[str, Credit] = {
    "hazard": additive_hazard,
    "markov": _on_paths(markov),
    "shapley": _on_paths(shapley),
    "last_touch": _on_paths(last_touch),
    "first_touch": _on_paths(first_touch),
}
_TOUCH_COLUMNS = ("customer_id", "touched_at", "channel", "cost")
_CONVERSION_COLUMNS = ("customer_id", "converted_at", "value")


def _require(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    missing = [c for c in columns if c not in frame]
    if missing:
        raise SchemaError(f"{name} lacks column(s) {missing}; expected {list(columns)}")


def _usable(
    touches: pd.DataFrame, conversions: pd.DataFrame, channels: tuple[str, ...] | None
) -> tuple[pd.DataFrame, dict[str, int], tuple[str, ...]]:
    """The touches of known channels that can have caused a conversion, the counts of what was
    left out, and the context (unpaid) channels."""
    context = unpaid_channels(touches)
    known = (
        touches["channel"].isin((*channels, *context)) if channels else touches["channel"].notna()
    )
    usable, dropped = usable_touches(touches[known], conversions)
    counts = {
        "touches_read": len(touches),
        "unknown_channel": int((~known).sum()),
        **dropped,
        "conversions": len(conversions),
        "organic_conversions": int((~conversions["customer_id"].isin(usable["customer_id"])).sum()),
    }
    return usable, counts, context


def _interval(samples: list[float]) -> list[float]:
    low, high = np.percentile(samples, [2.5, 97.5])
    return [round(float(low), 4), round(float(high), 4)]


def _resampled(
    usable: pd.DataFrame, conversions: pd.DataFrame, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The touched customers drawn with replacement, each draw a customer of its own."""
    codes, ids = pd.factorize(usable["customer_id"])
    drawn = pd.DataFrame({"code": rng.integers(0, len(ids), len(ids))})
    drawn["customer_id"] = np.arange(len(drawn))
    touches = usable.drop(columns="customer_id").assign(code=codes).merge(drawn, on="code")
    first = conversions.groupby("customer_id")["converted_at"].min()
    won = pd.DataFrame({"code": ids.get_indexer(first.index), "converted_at": first.to_numpy()})
    won = won[won["code"] >= 0].merge(drawn, on="code")
    return touches, won


def attribute(
    touches: pd.DataFrame,
    conversions: pd.DataFrame,
    model: str = "hazard",
    channels: tuple[str, ...] | None = None,
    rounds: int = 50,
    seed: int = 0,
    sequence: bool = False,
) -> dict[str, Any]:
    _require(touches, _TOUCH_COLUMNS, "touches")
    _require(conversions, _CONVERSION_COLUMNS, "conversions")
    if model not in MODELS:
        raise SchemaError(f"unknown model {model!r}; choose from {', '.join(MODELS)}")
    kept, counts, context = _usable(touches, conversions, channels)
    if kept.empty or set(kept["channel"]) <= set(context):
        raise SchemaError(f"no paid touch before a conversion or the log's end: {counts}")
    names = channels or tuple(sorted(set(kept["channel"]) - set(context)))
    credits = {name: fit(kept, conversions, context) for name, fit in MODELS.items()}
    credit = credits[model]
    rng = np.random.default_rng(seed)
    resampled: dict[str, list[float]] = {c: [] for c in names}
    for _ in range(rounds):
        again = MODELS[model](*_resampled(kept, conversions, rng), context)
        for c in names:
            resampled[c].append(again.get(c, 0.0))
    spend = kept.groupby("channel")["cost"].sum()
    touched = kept.groupby("channel").size()
    mean_value = float(conversions["value"].mean()) if len(conversions) else 0.0
    per_channel = {}
    for c in names:
        cost = float(spend.get(c, 0.0))
        conv = max(credit.get(c, 0.0), 0.0)
        value_samples = [max(x, 0.0) * mean_value for x in resampled[c]]
        roi_samples = [(v - cost) / cost for v in value_samples] if cost > 0 else []
        touches_c = int(touched.get(c, 0))
        per_channel[c] = {
            "touches": touches_c,
            "cost_per_touch": round(cost / touches_c, 4) if touches_c else None,
            "credited_value_per_touch": (
                round(conv * mean_value / touches_c, 4) if touches_c else None
            ),
            "credited_conversions": round(conv, 2),
            "credited_conversions_ci": _interval(resampled[c]),
            "spend": round(cost, 2),
            "cost_per_conversion": round(cost / conv, 2) if conv > 0 else None,
            "value": round(conv * mean_value, 2),
            "roi": round((conv * mean_value - cost) / cost, 4) if cost > 0 else None,
            "roi_ci": _interval(roi_samples) if roi_samples else None,
        }
    return {
        "model": model,
        "context_channels": list(context),
        "bootstrap_rounds": rounds,
        "mean_conversion_value": round(mean_value, 2),
        "input": counts,
        "channels": per_channel,
        "budget_split": _split(per_channel),
        "comparison": _comparison(credits, names, kept, conversions, context, sequence),
    }


def _comparison(
    credits: dict[str, dict[str, float]],
    names: tuple[str, ...],
    kept: pd.DataFrame,
    conversions: pd.DataFrame,
    context: tuple[str, ...],
    sequence: bool,
) -> dict[str, Any]:
    """Each model's credit shares on the same touches; with ``sequence``, the LSTM's too, with
    its held-out AUCs."""
    compared: dict[str, Any] = {
        name: {"shares": {c: round(v, 4) for c, v in shares(credit, names).items()}}
        for name, credit in credits.items()
    }
    if sequence:
        fitted = sequence_attribution(kept, conversions, context)
        compared["sequence"] = {
            "shares": {c: round(v, 4) for c, v in shares(fitted.credit, names).items()},
            "touch_auc": round(fitted.touch_auc, 4),
            "journey_auc": round(fitted.journey_auc, 4),
            "held_out_journeys": fitted.held_out,
        }
    return compared


def _split(per_channel: dict[str, dict[str, Any]]) -> dict[str, float]:
    """Shares for channels with a positive ROI, proportional to value per dollar."""
    worth = {c: m["value"] / m["spend"] for c, m in per_channel.items() if (m["roi"] or 0) > 0}
    total = sum(worth.values())
    return {c: round(w / total, 4) for c, w in worth.items()} if total > 0 else {}
