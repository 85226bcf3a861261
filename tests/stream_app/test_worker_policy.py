"""The worker's policy and triggers come from the project file when NBA_PROJECT names one."""

from __future__ import annotations

from pathlib import Path

from policies.catalog import default_catalog
from stream_app.messages import DECISION_REQUESTED
from stream_app.settings import load_settings
from stream_app.worker import policy_config, trigger_types

PROJECT = """
name: shop
sources: {customers: {path: customers.csv}}
events: {types: [visit, cart, complaint], triggers: [complaint]}
catalog:
  actions:
    - {name: voucher, channel: email, cost_fixed: 2}
segments: {high_risk: 0.5, high_value: 300}
contact_rules: {cooldown_days: {email: 14}, max_contacts: 1, window_days: 30}
"""


def test_without_a_project_the_simulated_worlds_defaults_apply() -> None:
    settings = load_settings()
    assert policy_config(settings).catalog == default_catalog()
    assert trigger_types(settings) == settings.trigger_event_types | {DECISION_REQUESTED}


def test_a_project_file_sets_catalog_segments_contact_rules_and_triggers(tmp_path: Path) -> None:
    (tmp_path / "nba.yaml").write_text(PROJECT)
    settings = load_settings(project=tmp_path / "nba.yaml")
    policy = policy_config(settings)
    assert policy.catalog.names == ("do_nothing", "voucher")
    assert policy.segments.high_risk == 0.5 and policy.segments.high_value == 300
    assert policy.contact.max_contacts == 1 and policy.contact.cooldown_days == {"email": 14}
    assert trigger_types(settings) == frozenset({"complaint", DECISION_REQUESTED})
