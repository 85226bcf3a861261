"""The sequence model of conversion (attribution/sequence.py): it predicts, and its Shapley
credit is a fair split of what the model predicts the channels add."""

from __future__ import annotations

import pytest

from attribution.models import usable_touches
from attribution.sequence import _coalitions, _shapley, sequence_attribution
from simulator.journeys import CHANNELS, VISIT, simulate_journeys


def test_shapley_credit_splits_the_predicted_gain_and_pays_a_useless_channel_nothing() -> None:
    # v: conversions predicted with only these channels kept; "b" adds nothing anywhere.
    gains = {frozenset(): 1.0, frozenset("a"): 3.0, frozenset("b"): 1.0, frozenset("ab"): 3.0}
    gains |= {frozenset("c"): 2.0, frozenset("ac"): 5.0, frozenset("bc"): 2.0}
    gains[frozenset("abc")] = 5.0
    assert set(gains) == set(_coalitions(["a", "b", "c"]))
    credit = _shapley(gains, ["a", "b", "c"])
    assert sum(credit.values()) == pytest.approx(gains[frozenset("abc")] - gains[frozenset()])
    assert credit["b"] == pytest.approx(0.0)
    assert credit["a"] == pytest.approx(2.5) and credit["c"] == pytest.approx(1.5)


def test_the_model_predicts_conversions_on_held_out_journeys() -> None:
    journeys = simulate_journeys(20_000, seed=5)
    usable, _ = usable_touches(journeys.touches, journeys.conversions)
    result = sequence_attribution(usable, journeys.conversions, (VISIT,), epochs=3, seed=5)
    assert result.held_out == pytest.approx(0.2 * usable["customer_id"].nunique(), rel=0.05)
    assert result.touch_auc > 0.7  # chance is 0.5
    assert set(result.credit) == set(CHANNELS)  # visits are context, never credited
