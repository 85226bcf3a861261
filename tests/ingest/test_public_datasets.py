"""The example project files on the three public data sets in ../shared/data (never copied)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from ingest.importer import CURRENT, import_project
from ingest.project import load_project
from ingest.validate import validate_project

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module", autouse=True)
def _shared_data() -> None:
    assert SHARED.is_dir(), f"the public data sets are expected in {SHARED} (see its README)"


def test_hillstrom_imports_and_its_arm_means_are_the_published_ones(tmp_path: Path) -> None:
    reports, folder = import_project(load_project(EXAMPLES / "hillstrom/nba.yaml"), tmp_path)
    assert [(r.table, r.rows_read, r.rows_rejected) for r in reports] == [
        ("customers", 64_000, 0),
        ("experiments", 64_000, 0),
    ]
    experiments = pd.read_parquet(tmp_path / CURRENT / "experiments.parquet")
    means = experiments.groupby("action")[["visit", "conversion", "spend"]].mean()
    # The data set's README: visit 10.62% / 15.14% / 18.28%, conversion 0.57 / 0.88 / 1.25%,
    # spend $0.65 / $1.08 / $1.42 (no e-mail, womens, mens).
    published = {
        "do_nothing": (0.1062, 0.0057, 0.65),
        "womens_email": (0.1514, 0.0088, 1.08),
        "mens_email": (0.1828, 0.0125, 1.42),
    }
    for action, (visit, conversion, spend) in published.items():
        row = means.loc[action]
        assert row["visit"] == pytest.approx(visit, abs=5e-5)
        assert row["conversion"] == pytest.approx(conversion, abs=5e-5)
        assert row["spend"] == pytest.approx(spend, abs=5e-3)
    customers = pd.read_parquet(folder / "customers.parquet")
    assert customers["customer_id"].is_unique
    assert customers["newbie"].dtype == "boolean"


def test_customer_personality_keeps_blank_incomes_as_missing() -> None:
    reports, tables = validate_project(load_project(EXAMPLES / "customer_personality/nba.yaml"))
    assert [(r.table, r.rows_read, r.rows_rejected) for r in reports] == [
        ("customers", 2_240, 0),
        ("experiments", 2_240, 0),
    ]
    customers = {t.table: t.frame for t in tables}["customers"]
    assert customers["income"].isna().sum() == 24  # the blanks of the Income column
    assert {t.table: t.frame for t in tables}["experiments"]["response"].sum() == 334


def test_cdnow_transactions_cover_the_cohort_and_its_dates() -> None:
    reports, tables = validate_project(load_project(EXAMPLES / "cdnow/nba.yaml"))
    assert [(r.table, r.rows_read, r.rows_rejected) for r in reports] == [
        ("transactions", 69_659, 0)
    ]
    frame = tables[0].frame
    assert frame["customer_id"].nunique() == 23_570
    assert frame["occurred_at"].min() == pd.Timestamp("1997-01-01", tz="UTC")
    assert frame["occurred_at"].max() == pd.Timestamp("1998-06-30", tz="UTC")
