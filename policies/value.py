"""Expected value of each (customer, action): the economics every decision rests on.

    EV[i, a] = uplift_retention[i, a] x customer_value[i] + uplift_expansion[i, a] - cost[i, a]

``do_nothing`` (column 0) is always a candidate with EV 0. Inputs are validated before any
arithmetic: a NaN or out-of-range score is an error, never a silent default.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from policies.errors import SchemaError

__all__ = ["expected_value", "validate_scores"]

Floats = NDArray[np.float64]


def _finite(name: str, array: Floats) -> None:
    if not np.all(np.isfinite(array)):
        bad = int(np.argwhere(~np.isfinite(array))[0][0])
        raise SchemaError(
            f"{name} must be finite; row {bad} is {array.reshape(len(array), -1)[bad].tolist()}"
        )


def validate_scores(
    p_churn: Floats,
    uplift_retention: Floats,
    uplift_expansion: Floats,
    customer_value: Floats,
    cost: Floats,
) -> None:
    """Shapes agree, everything is finite, probabilities and uplifts are in range, no negatives."""
    n = p_churn.shape[0]
    if p_churn.ndim != 1 or customer_value.shape != (n,):
        raise SchemaError("p_churn and customer_value must be 1-d arrays of the same length")
    if uplift_retention.ndim != 2 or uplift_retention.shape[0] != n:
        raise SchemaError(
            f"uplift_retention must be [customers, actions], got {uplift_retention.shape}"
        )
    for name, array in (("uplift_expansion", uplift_expansion), ("cost", cost)):
        if array.shape != uplift_retention.shape:
            raise SchemaError(f"{name} must have shape {uplift_retention.shape}, got {array.shape}")
    for name, array in (
        ("p_churn", p_churn),
        ("uplift_retention", uplift_retention),
        ("uplift_expansion", uplift_expansion),
        ("customer_value", customer_value),
        ("cost", cost),
    ):
        _finite(name, array)
    if np.any((p_churn < 0) | (p_churn > 1)):
        raise SchemaError("p_churn must lie in [0, 1]")
    if np.any(np.abs(uplift_retention) > 1):
        raise SchemaError("uplift_retention is a change in probability and must lie in [-1, 1]")
    if np.any(customer_value < 0):
        raise SchemaError("customer_value must be >= 0")
    if np.any(cost < 0):
        raise SchemaError("cost must be >= 0")


def expected_value(
    uplift_retention: Floats, uplift_expansion: Floats, customer_value: Floats, cost: Floats
) -> Floats:
    """EV per [customer, action]; column 0 (do_nothing) is exactly 0."""
    ev = uplift_retention * customer_value[:, None] + uplift_expansion - cost
    ev[:, 0] = 0.0
    return ev
