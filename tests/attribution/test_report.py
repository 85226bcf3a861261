"""`nba attribution`: credit, cost and ROI per channel with intervals, a budget split, and the
input rules (unknown channels, touches after the conversion, repeats) counted."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from attribution.report import attribute
from nba.cli import app
from policies.catalog import load_catalog
from policies.errors import ConfigError, SchemaError
from simulator.journeys import CHANNELS, VISIT, simulate_journeys


def test_bad_touches_are_left_out_and_counted_and_the_numbers_hang_together() -> None:
    journeys = simulate_journeys(5_000, seed=2)
    touches = journeys.touches
    stray = touches.head(7).assign(channel="fax")
    repeated = touches.head(5)
    report = attribute(
        pd.concat([touches, stray, repeated]), journeys.conversions, "shapley", CHANNELS, 30
    )
    counts = report["input"]
    assert counts["unknown_channel"] == 7 and counts["duplicates"] == 5
    assert counts["after_conversion"] > 0 and counts["touches_read"] == len(touches) + 12
    for row in report["channels"].values():
        low, high = row["credited_conversions_ci"]
        assert low <= row["credited_conversions"] <= high
        if row["credited_conversions"] > 0:
            expected = row["spend"] / row["credited_conversions"]
            assert row["cost_per_conversion"] == pytest.approx(expected, abs=0.01)
    assert sum(report["budget_split"].values()) == pytest.approx(1.0, abs=1e-3)


def test_the_default_model_pays_retargeting_nothing_and_gives_it_no_budget() -> None:
    journeys = simulate_journeys(20_000, seed=3)
    report = attribute(journeys.touches, journeys.conversions, rounds=20)
    assert report["model"] == "hazard" and report["context_channels"] == [VISIT]
    assert set(report["channels"]) == set(CHANNELS)  # visits are context, not a channel
    retargeting = report["channels"]["retargeting"]
    assert retargeting["credited_conversions_ci"][0] <= journeys.caused["retargeting"]
    assert retargeting["roi"] < 0 and "retargeting" not in report["budget_split"]
    last = attribute(journeys.touches, journeys.conversions, "last_touch", rounds=2)
    assert last["channels"]["retargeting"]["roi"] > 0  # what last touch would have said


def test_journeys_without_a_paid_touch_are_one_clear_error() -> None:
    journeys = simulate_journeys(300, seed=1)
    visits = journeys.touches[journeys.touches["channel"] == VISIT]
    with pytest.raises(SchemaError, match="no paid touch before a conversion"):
        attribute(visits, journeys.conversions)


def test_a_missing_column_is_one_clear_error() -> None:
    journeys = simulate_journeys(200, seed=1)
    with pytest.raises(SchemaError, match=r"touches lacks column\(s\) \['cost'\]"):
        attribute(journeys.touches.drop(columns="cost"), journeys.conversions)


def test_the_command_reads_a_folder_and_writes_the_report(tmp_path: Path) -> None:
    runner = CliRunner()
    written = runner.invoke(
        app, ["simulate", "journeys", "--out", str(tmp_path), "--customers", "3000"]
    )
    assert written.exit_code == 0, written.output
    out = tmp_path / "attribution.json"
    result = runner.invoke(
        app, ["attribution", "--data", str(tmp_path), "--rounds", "5", "--out", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "ChannelAttribution" not in result.output and "Looking" not in result.output
    report = json.loads(out.read_text())
    assert set(report["channels"]) == set(CHANNELS)
    truth = json.loads((tmp_path / "truth.json").read_text())
    assert truth["retargeting"] < 0.05
    conversions = pd.read_csv(tmp_path / "conversions.csv")
    assert report["input"]["conversions"] == len(conversions)


def test_journeys_go_through_the_data_contract_and_attribution_reads_the_import(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    data = tmp_path / "journeys"
    made = runner.invoke(app, ["simulate", "journeys", "--out", str(data), "--customers", "2000"])
    assert made.exit_code == 0, made.output
    project, imported = str(data / "nba.yaml"), tmp_path / "imported"
    done = runner.invoke(app, ["data", "import", "--project", project, "--out", str(imported)])
    assert done.exit_code == 0, done.output
    out = tmp_path / "attribution.json"
    argv = ["attribution", "--data", str(imported), "--rounds", "3", "--out", str(out)]
    result = runner.invoke(app, argv)
    assert result.exit_code == 0, result.output
    from_import = json.loads(out.read_text())
    direct = attribute(
        pd.read_csv(data / "touches.csv", parse_dates=["touched_at"]),
        pd.read_csv(data / "conversions.csv", parse_dates=["converted_at"]),
        rounds=3,
    )
    assert from_import["channels"] == direct["channels"]


def test_a_journey_file_that_breaks_the_contract_is_named_by_line_and_column(
    tmp_path: Path,
) -> None:
    runner = CliRunner()
    made = runner.invoke(app, ["simulate", "journeys", "--out", str(tmp_path), "--customers", "50"])
    assert made.exit_code == 0, made.output
    touches = pd.read_csv(tmp_path / "touches.csv")
    touches.loc[1, "cost"] = -0.3
    touches.to_csv(tmp_path / "touches.csv", index=False)
    result = runner.invoke(app, ["data", "validate", "--project", str(tmp_path / "nba.yaml")])
    assert result.exit_code == 2
    assert "touches.csv:3:cost: must be >= 0" in result.output


def test_the_command_prices_a_catalog_from_the_report(tmp_path: Path) -> None:
    runner = CliRunner()
    made = runner.invoke(
        app, ["simulate", "journeys", "--out", str(tmp_path), "--customers", "500"]
    )
    assert made.exit_code == 0, made.output
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text(
        "actions:\n  - {name: welcome_email, channel: email, cost_fixed: 5, "
        "attribution_channel: email}\n  - {name: call, channel: phone, cost_fixed: 200}\n"
    )
    out, priced = tmp_path / "attribution.json", tmp_path / "priced.yaml"
    argv = ["attribution", "--data", str(tmp_path), "--rounds", "2", "--out", str(out)]
    result = runner.invoke(app, [*argv, "--catalog", str(catalog), "--catalog-out", str(priced)])
    assert result.exit_code == 0, result.output
    email = json.loads(out.read_text())["channels"]["email"]
    assert email["cost_per_touch"] == pytest.approx(email["spend"] / email["touches"], abs=1e-4)
    actions = {a.name: a.cost_fixed for a in load_catalog(priced).actions}
    assert actions == {"welcome_email": email["cost_per_touch"], "call": 200}
    alone = runner.invoke(app, [*argv, "--catalog", str(catalog)])
    # nba's entry point turns a ConfigError into one line and exit code 2.
    assert isinstance(alone.exception, ConfigError)
    assert str(alone.exception) == "--catalog and --catalog-out go together"
