"""BG/NBD + Gamma-Gamma on CDNOW (../shared/data): the published parameters, reproduced."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pandas as pd
import pytest

from features.clv import fit_clv, plot_calibration
from ingest.project import load_project
from ingest.validate import validate_project
from tests.ingest.test_public_datasets import EXAMPLES

CALIBRATION_END = datetime(1997, 9, 30, tzinfo=UTC)


def _transactions(name: str) -> pd.DataFrame:
    _, tables = validate_project(load_project(EXAMPLES / "cdnow" / name))
    return tables[0].frame


def _three_digits(value: float) -> str:
    return f"{value:.3g}"


def test_the_sample_reproduces_the_published_fits_to_three_significant_digits(
    tmp_path: Path,
) -> None:
    fit = fit_clv(_transactions("sample.yaml"), CALIBRATION_END)
    # Fader, Hardie & Lee 2005; Fader & Hardie's Gamma-Gamma note (the data set's README).
    assert {k: _three_digits(v) for k, v in fit.bg_nbd.items()} == {
        "r": "0.243",
        "alpha": "4.41",
        "a": "0.793",
        "b": "2.43",
    }
    assert {k: _three_digits(v) for k, v in fit.gamma_gamma.items()} == {
        "p": "6.25",
        "q": "3.74",
        "v": "15.4",
    }
    first_of_january = fit.customers.loc[fit.customers["T"].idxmax(), "T"]
    assert first_of_january == pytest.approx(38.86, abs=0.005)
    table = fit.calibration
    assert table["customers"].sum() == 2_357
    # The holdout check: predictions within 40% of what the customers did in weeks 40-78.
    assert ((table["predicted"] - table["actual"]).abs() <= 0.4 * table["actual"]).all()
    assert plot_calibration(fit, tmp_path / "check.png").stat().st_size > 10_000


def test_the_whole_cohort_gets_a_value_per_customer() -> None:
    fit = fit_clv(_transactions("nba.yaml"), CALIBRATION_END)
    assert len(fit.customers) == 23_570
    assert fit.customers["customer_id"].is_unique
    assert (fit.customers["clv"] >= 0).all() and fit.customers["clv"].notna().all()
    assert 0.2 < fit.bg_nbd["r"] < 0.3  # the full cohort is close to its 1/10 sample
