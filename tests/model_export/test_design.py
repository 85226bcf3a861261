"""The design matrix's compiled graph (model_export.design): the same matrix as scikit-learn's
own ``transform``, on any frame a worker may meet."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ingest.project import Project
from model_export.design import MAX_LEVELS, DesignMatrix

pytestmark = pytest.mark.filterwarnings("ignore:Skipping features without any observed values")

LEVELS = [f"level{k}" for k in range(MAX_LEVELS + 10)]  # more than kept: the rarest fold


@pytest.fixture(scope="module")
def design(hillstrom_import: tuple[Project, Path]) -> DesignMatrix:
    project, _ = hillstrom_import
    mixed = Project.model_validate(
        {
            **project.model_dump(),
            "features": [
                {"name": "spend", "kind": "numeric"},
                {"name": "visits", "kind": "numeric"},
                {"name": "empty", "kind": "numeric"},  # blank throughout training: dropped
                {"name": "member", "kind": "boolean"},
                {"name": "region", "kind": "categorical"},
                {"name": "plan", "kind": "categorical"},
            ],
        }
    )
    rng = np.random.default_rng(0)
    n = 3_000
    spend = rng.gamma(2.0, 50.0, n)
    spend[rng.random(n) < 0.1] = np.nan  # blanks in training: a missing indicator is kept
    weights = 1.0 / np.arange(1, len(LEVELS) + 1)  # a long tail of rare levels
    training = pd.DataFrame(
        {
            "spend": spend,
            "visits": rng.poisson(3, n).astype(float),
            "empty": np.full(n, np.nan),
            "member": pd.array(rng.random(n) < 0.4, dtype="boolean"),
            "region": rng.choice(LEVELS, n, p=weights / weights.sum()),
            "plan": rng.choice(["basic", "pro"], n),
        }
    )
    training.loc[rng.random(n) < 0.05, "member"] = pd.NA
    return DesignMatrix(mixed).fit(training)


rows = st.fixed_dictionaries(
    {
        "spend": st.one_of(st.none(), st.floats(-1e6, 1e6, allow_nan=False)),
        "visits": st.one_of(st.none(), st.integers(0, 10_000).map(float)),
        "empty": st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False)),
        "member": st.one_of(st.none(), st.booleans()),
        "region": st.one_of(st.none(), st.sampled_from([*LEVELS, "never seen", ""])),
        "plan": st.one_of(st.none(), st.sampled_from(["basic", "pro", "enterprise"])),
    }
)


@settings(max_examples=60, deadline=None)
@given(st.lists(rows, min_size=1, max_size=20))
def test_the_compiled_graph_gives_scikit_learns_matrix(
    design: DesignMatrix, drawn: list[dict[str, object]]
) -> None:
    frame = pd.DataFrame(drawn)
    frame["member"] = frame["member"].astype("boolean")
    expected = np.asarray(design.transformer_.transform(design._prepared(frame)), np.float32)
    served = design.transform(frame)
    assert served.dtype == np.float32
    np.testing.assert_array_equal(served, expected)


def test_blanks_unseen_and_rare_levels_are_encoded_as_in_training(design: DesignMatrix) -> None:
    names = list(design.names_)
    assert "missingindicator_spend" in names  # spend had blanks in training
    assert "empty" not in names
    assert "region_infrequent_sklearn" in names  # the tail of regions was folded
    frame = pd.DataFrame(
        {
            "spend": [np.nan, 10.0],
            "visits": [1.0, 2.0],
            "empty": [np.nan, 5.0],
            "member": pd.array([None, True], dtype="boolean"),
            "region": [LEVELS[-1], "never seen"],
            "plan": ["pro", "enterprise"],
        }
    )
    x = pd.DataFrame(design.transform(frame), columns=names)
    assert x["missingindicator_spend"].tolist() == [1.0, 0.0]
    assert x["region_infrequent_sklearn"].tolist() == [1.0, 1.0]  # rare and unseen: folded
    assert x[["plan_basic", "plan_pro"]].sum(axis=1).tolist() == [1.0, 0.0]
