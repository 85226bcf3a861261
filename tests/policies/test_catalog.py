"""The action catalog and policy settings: defaults, YAML loading, clear errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from policies.arms import ArmConfig
from policies.catalog import Catalog, default_catalog, load_catalog
from policies.errors import ConfigError
from simulator.config import WorldConfig


def test_default_catalog_matches_the_simulator() -> None:
    assert default_catalog().names == WorldConfig().action_names


def test_costs_fixed_and_percent_of_value() -> None:
    catalog = default_catalog()
    cost = catalog.cost_matrix(np.array([10_000.0]))
    assert cost[0, 0] == 0
    assert cost[0, catalog.index("account_manager_call")] == 200
    assert cost[0, catalog.index("discount_offer")] == pytest.approx(1_500)


@pytest.mark.parametrize(
    ("yaml_text", "needle"),
    [
        ("actions: []", "actions"),
        ("actions: [{name: a, channel: email, cost_fixed: -5}]", "cost_fixed"),
        ("actions: [{name: a, channel: fax}]", "channel"),
        ("actions: [{name: a, channel: email}, {name: a, channel: phone}]", "duplicate"),
        ("actions: [{name: do_nothing, channel: email}]", "implied"),
        (
            "actions: [{name: a, channel: email, eligibility: {segments: [Whales]}}]",
            "unknown segments",
        ),
        ("actions: [{name: a, channel: email, colour: red}]", "colour"),
        ("actions: [{name: a", "not valid YAML"),
    ],
)
def test_bad_catalogs_give_one_clear_error(tmp_path: Path, yaml_text: str, needle: str) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml_text)
    with pytest.raises(ConfigError, match=needle):
        load_catalog(path)


def test_unknown_action_is_named() -> None:
    with pytest.raises(ConfigError, match="unknown action 'fax_blast'"):
        default_catalog().index("fax_blast")


def test_arm_shares_must_leave_room_for_treatment() -> None:
    with pytest.raises(ValueError, match="below 1"):
        ArmConfig(holdout_share=0.6, explore_share=0.5)


def test_an_action_takes_its_cost_per_touch_from_an_attribution_report() -> None:
    catalog = Catalog.model_validate(
        {
            "actions": [
                {
                    "name": "nudge",
                    "channel": "email",
                    "cost_fixed": 5,
                    "attribution_channel": "email",
                },
                {"name": "call", "channel": "phone", "cost_fixed": 200},
            ]
        }
    )
    priced = catalog.priced({"email": {"cost_per_touch": 0.05}, "search": {"cost_per_touch": 1.5}})
    assert [a.cost_fixed for a in priced.actions] == [0.05, 200]
    with pytest.raises(ConfigError, match="action nudge: attribution channel 'email' has no cost"):
        catalog.priced({"search": {"cost_per_touch": 1.5}})
