"""A sequence model of conversion, as in DeepMTA (Du et al., 2019): an LSTM reads a customer's
touches in time order and, at each touch, gives the chance that the customer converts before
the next touch (within ``WINDOW_H`` hours at most). It reads the touch's channel, the hours
since the touch before, and the hours until the next (its exposure). The journey's chance to
convert is one minus the product of the chances not to.

Why per touch and not per journey (DeepMTA's own label): a converter's journey ends at the
conversion and another's at the end of the log, so a journey-level model learns that a journey
ending just after some touch converts, and credits whatever touch lands last (on the simulator,
retargeting got all the credit that way). Each touch's window is known before the outcome, so
the per-touch label carries no such leak.

Attribution comes from the model as Shapley values over the paid channels, with the model as
the value function: ``v(S)`` is the predicted conversions of the held-out journeys when only the
touches of the channels in ``S`` (and the context, such as site visits) are kept; windows are
recomputed without the removed touches.

Framework: Keras 3 on JAX's CPU build (about 95 MB of wheels). torch from PyPI pulls the CUDA
stack, gigabytes, on a machine without a GPU; a hand-written LSTM would be code to maintain.
Two AUCs on held-out journeys: per touch (does the customer convert before the next touch?),
the model's own task; and per journey (do they convert at all?), which the truncation above
drags down: a converter's journey has fewer touches to convert in, so under this model it looks
less likely to convert than a longer one. The share error against the simulator's truth says
whether its credit is causal (benchmarks/attribution_speed.py reports all three).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from math import factorial
from typing import Any

import numpy as np
import pandas as pd
from sklearn.metrics import roc_auc_score

__all__ = ["SequenceAttribution", "sequence_attribution"]

MAX_TOUCHES = 24  # the most recent touches of a journey the model reads
WINDOW_H = 24.0  # the longest a touch's window runs (hours)


@dataclass(frozen=True)
class SequenceAttribution:
    credit: dict[str, float]  # predicted conversions each paid channel adds (Shapley)
    touch_auc: float  # ROC-AUC, held-out journeys' touches: converts before the next touch?
    journey_auc: float  # ROC-AUC, held-out journeys: converts at all? (see the module's doc)
    held_out: int  # journeys the AUCs and the credit are computed on


@dataclass(frozen=True)
class _Encoded:
    channels: np.ndarray  # (journeys, MAX_TOUCHES) channel ids, 0 = no touch
    times: np.ndarray  # (journeys, MAX_TOUCHES, 2) log hours since the touch before, until next
    converts: np.ndarray  # (journeys, MAX_TOUCHES) 1 when the conversion falls in the window


def _encoded(
    touches: pd.DataFrame,
    customers: pd.Index,
    vocabulary: dict[str, int],
    converted_at: pd.Series,
    log_end: pd.Timestamp,
) -> _Encoded:
    """Per customer (in ``customers`` order), the last ``MAX_TOUCHES`` touches, left-aligned
    and padded with 0. ``converted_at``: first conversion time per customer."""
    ordered = touches.sort_values(["customer_id", "touched_at"], kind="stable")
    by_customer = ordered.groupby("customer_id")["touched_at"]
    since = (ordered["touched_at"] - by_customer.shift(1)).dt.total_seconds() / 3600
    next_touch = by_customer.shift(-1).fillna(log_end)
    longest = ordered["touched_at"] + pd.Timedelta(hours=WINDOW_H)
    window_end = next_touch.where(next_touch < longest, longest)
    until = (window_end - ordered["touched_at"]).dt.total_seconds() / 3600
    conversion = ordered["customer_id"].map(converted_at)
    inside = (conversion > ordered["touched_at"]) & (conversion <= window_end)
    frame = pd.DataFrame(
        {
            "row": customers.get_indexer(pd.Index(ordered["customer_id"])),
            "channel": ordered["channel"].map(vocabulary).to_numpy(),
            "since": np.log1p(since.fillna(0.0).clip(lower=0.0).to_numpy()),
            "until": np.log1p(until.clip(lower=0.0).to_numpy()),
            "converts": inside.to_numpy(),
        }
    )
    frame = frame[frame["row"] >= 0]
    frame = frame[frame.groupby("row").cumcount(ascending=False) < MAX_TOUCHES]
    rows, position = frame["row"].to_numpy(), frame.groupby("row").cumcount().to_numpy()
    encoded = _Encoded(
        channels=np.zeros((len(customers), MAX_TOUCHES), np.int32),
        times=np.zeros((len(customers), MAX_TOUCHES, 2), np.float32),
        converts=np.zeros((len(customers), MAX_TOUCHES), np.float32),
    )
    encoded.channels[rows, position] = frame["channel"].to_numpy()
    encoded.times[rows, position] = frame[["since", "until"]].to_numpy()
    encoded.converts[rows, position] = frame["converts"].to_numpy()
    return encoded


def _model(vocabulary_size: int, seed: int) -> Any:
    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras  # a 4 s import: only when a sequence model is asked for

    keras.utils.set_random_seed(seed)
    channels = keras.Input((MAX_TOUCHES,), dtype="int32")
    times = keras.Input((MAX_TOUCHES, 2))
    embedded = keras.layers.Embedding(vocabulary_size, 8, mask_zero=True)(channels)
    joined = keras.layers.Concatenate()([embedded, times])
    states = keras.layers.LSTM(32, return_sequences=True)(joined)
    converts = keras.layers.Dense(1, activation="sigmoid")(states)
    model = keras.Model([channels, times], converts)
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="binary_crossentropy")
    return model


def _touch_chance(model: Any, encoded: _Encoded) -> np.ndarray:
    """Per touch, the chance to convert in its window (0 where there is no touch)."""
    step = model.predict([encoded.channels, encoded.times], batch_size=4096, verbose=0)[..., 0]
    chance: np.ndarray = np.where(encoded.channels > 0, step, 0.0)
    return chance


def _journey_chance(model: Any, encoded: _Encoded) -> np.ndarray:
    """Per journey, one minus the product over its touches of the chance not to convert."""
    chance: np.ndarray = 1.0 - np.prod(1.0 - _touch_chance(model, encoded), axis=1)
    return chance


def _shapley(values: dict[frozenset[str], float], paid: list[str]) -> dict[str, float]:
    k = len(paid)
    credit = {}
    for channel in paid:
        total = 0.0
        for coalition, value in values.items():
            if channel in coalition:
                continue
            size = len(coalition)
            weight = factorial(size) * factorial(k - size - 1) / factorial(k)
            total += weight * (values[coalition | {channel}] - value)
        credit[channel] = total
    return credit


def _coalitions(paid: list[str]) -> list[frozenset[str]]:
    return [
        frozenset(c for i, c in enumerate(paid) if mask >> i & 1) for mask in range(1 << len(paid))
    ]


def sequence_attribution(
    usable: pd.DataFrame,
    conversions: pd.DataFrame,
    context: tuple[str, ...] = (),
    epochs: int = 6,
    held_out_share: float = 0.2,
    seed: int = 0,
) -> SequenceAttribution:
    """Train on a random share of the touched customers, report the AUC and the Shapley credit
    of the paid channels on the rest (``usable``: ``models.usable_touches``)."""
    customers = pd.Index(usable["customer_id"].unique())
    converted_at = conversions.groupby("customer_id")["converted_at"].min()
    log_end = max(usable["touched_at"].max(), conversions["converted_at"].max())
    vocabulary = {c: i + 1 for i, c in enumerate(sorted(set(usable["channel"])))}
    encoded = _encoded(usable, customers, vocabulary, converted_at, log_end)
    test = np.random.default_rng(seed).random(len(customers)) < held_out_share
    model = _model(len(vocabulary) + 1, seed)
    model.fit(
        [encoded.channels[~test], encoded.times[~test]],
        encoded.converts[~test][..., None],
        epochs=epochs,
        batch_size=128,
        verbose=0,
    )
    held = customers[test]
    held_touches = usable[usable["customer_id"].isin(held)]
    evaluated = _encoded(held_touches, held, vocabulary, converted_at, log_end)
    per_touch = _touch_chance(model, evaluated)
    touched = evaluated.channels > 0
    touch_auc = float(roc_auc_score(evaluated.converts[touched], per_touch[touched]))
    journey = 1.0 - np.prod(1.0 - per_touch, axis=1)
    journey_auc = float(roc_auc_score(held.isin(converted_at.index), journey))
    paid = sorted(set(vocabulary) - set(context))
    values: dict[frozenset[str], float] = {}
    for coalition in _coalitions(paid):
        kept = held_touches[held_touches["channel"].isin(coalition | set(context))]
        again = _encoded(kept, held, vocabulary, converted_at, log_end)
        values[coalition] = float(_journey_chance(model, again).sum())
    return SequenceAttribution(
        credit=_shapley(values, paid),
        touch_auc=touch_auc,
        journey_auc=journey_auc,
        held_out=int(test.sum()),
    )
