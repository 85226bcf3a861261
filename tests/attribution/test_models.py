"""Attribution against the simulator's truth (simulator/journeys.py): where last-touch goes
wrong, what the removal effect and Shapley values recover, and the additive hazard model that
tells retargeting (which follows site visits) from channels that cause conversions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import pytest

from attribution.hazard import additive_hazard
from attribution.models import (
    first_touch,
    last_touch,
    markov,
    paths,
    shapley,
    share_error,
    shares,
    usable_touches,
)
from simulator.journeys import CHANNELS, VISIT, Journeys, simulate_journeys


def _paid_paths(simulated: Journeys) -> pd.DataFrame:
    """The paths of the paid touches (site visits are nobody's credit)."""
    paid = simulated.touches[simulated.touches["channel"] != VISIT]
    return paths(paid, simulated.conversions)


@pytest.fixture(scope="module")
def simulated() -> Journeys:
    return simulate_journeys(30_000, seed=4)


@pytest.fixture(scope="module")
def journeys(simulated: Journeys) -> tuple[pd.DataFrame, dict[str, float]]:
    return _paid_paths(simulated), simulated.truth


def _hazard_error(simulated: Journeys, context: tuple[str, ...]) -> float:
    usable, _ = usable_touches(simulated.touches, simulated.conversions)
    credit = additive_hazard(usable, simulated.conversions, context)
    return share_error(shares(credit, CHANNELS), simulated.truth)


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


def test_the_hazard_model_errs_at_most_half_as_much_as_last_touch(
    simulated: Journeys, journeys: tuple[pd.DataFrame, dict[str, float]]
) -> None:
    journey, truth = journeys
    last = share_error(shares(last_touch(journey), CHANNELS), truth)
    assert _hazard_error(simulated, (VISIT,)) <= last / 2


def test_with_the_visits_not_logged_the_hazard_model_is_fooled_too() -> None:
    """Retargeting follows a signal the log no longer holds: no method reading it can tell."""
    hidden = simulate_journeys(30_000, seed=4, visits_logged=False)
    assert VISIT not in set(hidden.touches["channel"])
    last = share_error(shares(last_touch(_paid_paths(hidden)), CHANNELS), hidden.truth)
    assert _hazard_error(hidden, ()) > last / 2


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
