"""Population stability index: reference bins from training data, live counts, decay."""

from __future__ import annotations

import numpy as np
import pytest

from feedback.drift import DriftTracker, psi
from model_export.drift_reference import DriftReference, build_reference
from policies.errors import SchemaError

NAMES = ("logins", "seats")


def _data(n: int, seed: int, shift: float = 0.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(shift, 1.0, n), rng.lognormal(2, 0.5, n)]).astype(np.float32)


def _reference() -> DriftReference:
    x = _data(20_000, 0)
    return build_reference(x, NAMES, {"p_churn": np.random.default_rng(1).random(20_000)})


def test_same_distribution_is_stable_and_a_shift_is_flagged() -> None:
    reference = _reference()
    same = DriftTracker(reference)
    same.observe(_data(5_000, 2), NAMES, {"p_churn": np.random.default_rng(3).random(5_000)})
    assert max(same.feature_psi().values()) < 0.02
    assert same.score_psi()["p_churn"] < 0.02
    shifted = DriftTracker(reference)
    shifted.observe(_data(5_000, 2, shift=1.0), NAMES, {})
    found = shifted.feature_psi()
    assert found["logins"] > 0.25 and found["seats"] < 0.02


def test_old_traffic_fades_so_the_index_follows_recent_data() -> None:
    tracker = DriftTracker(_reference(), half_life_rows=2_000)
    tracker.observe(_data(10_000, 4, shift=2.0), NAMES, {})
    assert tracker.feature_psi()["logins"] > 1.0
    for seed in range(5, 15):
        tracker.observe(_data(2_000, seed), NAMES, {})
    assert tracker.feature_psi()["logins"] < 0.05


def test_reference_round_trips_and_nothing_counted_is_zero() -> None:
    reference = _reference()
    again = DriftReference.model_validate_json(reference.model_dump_json())
    assert again == reference
    assert (
        psi(reference.features["logins"], np.zeros(len(reference.features["logins"].shares))) == 0.0
    )
    assert sum(reference.features["seats"].shares) == pytest.approx(1.0)


def test_a_reference_needs_matching_names_and_finite_values() -> None:
    with pytest.raises(SchemaError, match="feature_names"):
        build_reference(_data(10, 0), ("only_one",), {})
    with pytest.raises(SchemaError, match="finite"):
        build_reference(np.full((5, 2), np.nan, np.float32), NAMES, {})
