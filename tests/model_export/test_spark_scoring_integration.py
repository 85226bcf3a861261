"""Batch scoring on Apache Spark (local mode, a real JVM): the decisions are those of the
single-machine `nba score --all` on the same snapshot."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pyspark.sql import SparkSession

from model_export.batch_serving import NativeScorer, batch_scorer
from model_export.serving import decisions_frame, score_all
from model_export.spark_scoring import score_all_spark, spark_session
from policies.catalog import default_catalog
from policies.decide import PolicyConfig
from simulator.config import WorldConfig
from simulator.world import build_world
from tests.conftest import promoted_registry

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spark() -> Iterator[SparkSession]:
    session = spark_session("local[2]")
    yield session
    session.stop()


def test_spark_decides_exactly_as_one_machine(spark: SparkSession, tmp_path: Path) -> None:
    catalog = default_catalog()
    registry = promoted_registry(tmp_path)
    snapshot = build_world(WorldConfig(n_customers=20_000, seed=2)).customers
    snapshot.to_parquet(tmp_path / "customers.parquet", index=False)
    budget = 0.05 * len(snapshot) * 200.0  # binds: the allocation decides who is left out

    scorer = batch_scorer(registry, catalog)  # what `nba score --all` serves: native models
    assert isinstance(scorer, NativeScorer)
    one = decisions_frame(snapshot, score_all(snapshot, scorer, PolicyConfig(), budget), "v1")
    ids, decisions, version = score_all_spark(
        spark, tmp_path / "customers.parquet", registry.root, catalog, PolicyConfig(), budget, 4
    )
    on_spark = decisions_frame(ids, decisions, version)

    assert version == "v1"
    assert on_spark["customer_id"].tolist() == one["customer_id"].tolist()
    assert (one["action"] != "do_nothing").sum() > 500, "the budget buys many actions"
    assert one["cost"].sum() > 0.95 * budget, "and it binds"
    pd.testing.assert_frame_equal(on_spark, one)
    assert np.array_equal(
        decisions.action, score_all(snapshot, scorer, PolicyConfig(), budget).action
    )
