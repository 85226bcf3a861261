"""Attribution against the simulator's truth (simulator/journeys.py): where last-touch goes
wrong, and what the removal effect and Shapley values recover (issue 23, first piece)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from attribution.models import (
    first_touch,
    last_touch,
    markov,
    paths,
    shapley,
    share_error,
    shares,
)
from simulator.journeys import CHANNELS, simulate_journeys


@pytest.fixture(scope="module")
def journeys() -> tuple[pd.DataFrame, dict[str, float]]:
    simulated = simulate_journeys(30_000, seed=4)
    return paths(simulated.touches, simulated.conversions), simulated.truth


def test_retargeting_lands_before_conversions_it_did_not_cause(
    journeys: tuple[pd.DataFrame, dict[str, float]],
) -> None:
    journey, truth = journeys
    assert truth["retargeting"] < 0.01  # it causes (almost) nothing
    assert shares(last_touch(journey), CHANNELS)["retargeting"] > 0.25  # last touch pays it


def test_markov_and_shapley_are_closer_to_the_truth_than_last_touch(
    journeys: tuple[pd.DataFrame, dict[str, float]],
) -> None:
    journey, truth = journeys
    errors = {
        name: share_error(shares(model(journey), CHANNELS), truth)
        for name, model in {
            "last": last_touch,
            "first": first_touch,
            "markov": markov,
            "shapley": shapley,
        }.items()
    }
    assert errors["markov"] < errors["last"] and errors["shapley"] < errors["last"], errors


def test_shapley_splits_a_shared_conversion_and_pays_a_lone_one_whole() -> None:
    journey = pd.DataFrame(
        {
            "customer_id": ["a", "b", "c"],
            "channels": [("search", "email"), ("search",), ("email",)],
            "converted": [True, True, False],
        }
    )
    # v({}) = 0, v(search) = 1, v(email) = 0, v(both) = 2: search 1.5, email 0.5.
    assert shapley(journey) == pytest.approx({"search": 1.5, "email": 0.5})


def test_touches_at_or_after_the_conversion_and_repeated_touches_are_left_out() -> None:
    at = datetime(2026, 9, 1, tzinfo=UTC)
    touches = pd.DataFrame(
        {
            "customer_id": ["a", "a", "a", "a"],
            "touched_at": [at, at, at + timedelta(hours=2), at + timedelta(hours=3)],
            "channel": ["search", "search", "email", "display"],
        }
    )
    conversions = pd.DataFrame({"customer_id": ["a"], "converted_at": [at + timedelta(hours=2)]})
    [row] = paths(touches, conversions).itertuples()
    assert row.channels == ("search",) and row.converted
