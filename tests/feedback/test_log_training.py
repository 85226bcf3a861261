"""The engine's randomized arms as a training frame: within-arm propensities, as-of features."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from feedback.log_training import experiment_from_log
from policies.arms import Arm, ArmConfig, propensity
from policies.catalog import default_catalog
from policies.errors import ConfigError

ARMS = ArmConfig(holdout_share=0.2, explore_share=0.1)
CATALOG = default_catalog()


def _logged(arm: str, chosen: int, pick: int, eligible: list[bool]) -> float:
    """The propensity the engine logs for one decision (policies.arms.propensity)."""
    code = {"holdout": Arm.HOLDOUT, "explore": Arm.EXPLORE, "treatment": Arm.TREATMENT}[arm]
    return float(
        propensity(
            np.array([chosen]),
            np.array([pick]),
            np.array([eligible]),
            np.array([code], dtype=np.int8),
            ARMS,
        )[0]
    )


def _decision(
    customer: str, arm: str, chosen: int, pick: int, eligible: list[bool], outcome: str = ""
) -> dict[str, object]:
    outcome = outcome or {"holdout": "holdout", "explore": "explore"}.get(arm, "best_ev")
    return {
        "action_id": f"a-{customer}",
        "customer_id": customer,
        "action": CATALOG.names[chosen],
        "arm": arm,
        "propensity": _logged(arm, chosen, pick, eligible),
        "reasons": [f"arm:{arm}", f"decision:{outcome}"],
        "decided_at": pd.Timestamp("2026-03-10", tz="UTC"),
        "retained": True,
        "value": 1_000.0,
        "expansion": 50.0,
    }


ALL = [True] * 6
TWO = [True, True, False, False, False, False]  # do_nothing and a call allowed: k = 2


def _snapshots() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "customer_id": ["c1", "c1", "c2", "c3", "c4"],
            # A parquet file's timestamps come back in microseconds, the decisions' in ns.
            "snapshot_at": pd.to_datetime(
                ["2026-03-01", "2026-03-20", "2026-03-01", "2026-03-01", "2026-04-01"], utc=True
            ).as_unit("us"),
            "logins_30d": [5, 99, 7, 8, 9],
            "contract_value": [1_000.0] * 5,
        }
    )


def test_an_explored_pick_a_limit_cut_is_left_out_and_counted() -> None:
    """Served do_nothing because the budget or a capacity ran out, not drawn: policies.decide
    logs it limit_reached, and it is not a row of the randomized experiment."""
    joined = pd.DataFrame(
        [
            _decision("c1", "explore", 0, 1, ALL),
            _decision("c2", "explore", 0, 1, ALL, outcome="limit_reached"),
            _decision("c3", "holdout", 0, 0, ALL),
        ]
    )
    log = experiment_from_log(joined, _snapshots(), CATALOG, ARMS)
    assert sorted(log.frame["customer_id"]) == ["c1", "c3"]
    assert (log.explore_cut, log.explore_rows, log.holdout_rows) == (1, 1, 1)


def test_randomized_arms_only_with_their_design_propensities() -> None:
    joined = pd.DataFrame(
        [
            _decision("c1", "holdout", 0, 0, ALL),
            _decision("c2", "explore", 1, 1, TWO),  # explored onto the policy's own pick
            _decision("c3", "explore", 3, 1, ALL),
            _decision("c9", "treatment", 1, 1, ALL),
        ]
    )
    log = experiment_from_log(joined, _snapshots(), CATALOG, ARMS)
    frame = log.frame.set_index("customer_id")
    assert set(frame.index) == {"c1", "c2", "c3"}, "the treatment arm is not randomized"
    assert frame.loc["c1", "propensity"] == 1.0, "the holdout always gets do_nothing"
    assert frame.loc["c2", "propensity"] == pytest.approx(1 / 2), "one of k = 2 allowed"
    assert frame.loc["c3", "propensity"] == pytest.approx(1 / 6)
    assert frame["arm"].tolist() == ["holdout", "explore", "explore"]
    assert list(frame["treatment_index"]) == [0, 1, 3]
    assert frame.loc["c3", "treatment"] == CATALOG.names[3]
    assert frame["expansion_revenue"].eq(50.0).all() and frame["retained"].all()
    assert (log.holdout_rows, log.explore_rows, log.without_features) == (1, 2, 0)


def test_features_as_of_each_decision() -> None:
    joined = pd.DataFrame(
        [_decision("c1", "holdout", 0, 0, ALL), _decision("c4", "holdout", 0, 0, ALL)]
    )
    log = experiment_from_log(joined, _snapshots(), CATALOG, ARMS)
    assert log.frame["customer_id"].tolist() == ["c1"]
    assert log.frame["logins_30d"].tolist() == [5], "the snapshot before the decision, not after"
    assert log.without_features == 1, "c4's only snapshot is after its decision"


def test_bad_logs_are_refused_in_one_line() -> None:
    joined = pd.DataFrame([_decision("c1", "holdout", 0, 0, ALL)])
    with pytest.raises(ConfigError, match="snapshot_at"):
        experiment_from_log(joined, _snapshots().drop(columns="snapshot_at"), CATALOG, ARMS)
    with pytest.raises(ConfigError, match="exploration share"):
        experiment_from_log(joined, _snapshots(), CATALOG, ArmConfig(explore_share=0.6))
    strange = joined.assign(action="carrier_pigeon")
    with pytest.raises(ConfigError, match="carrier_pigeon"):
        experiment_from_log(strange, _snapshots(), CATALOG, ARMS)
