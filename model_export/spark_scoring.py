"""`nba score --all --engine spark`: the batch scoring of a base on Apache Spark.

The part of batch mode that grows with the base, reading customers and scoring them with the
model, runs on Spark's executors: `mapInPandas` hands each task its customers in Arrow
batches, and the task scores them with the same functions and the same scorer as the
single-machine path (`model_export.serving.base_scores`; `batch_serving.batch_scorer`, the
promoted version's native models, checked against its manifest). Per-customer scores do not
depend on which rows share a batch: the one base-wide input, the engagement percentile's
reference (every customer's logins per seat, sorted), is computed once and broadcast. The
allocation under the period's budget then runs on the driver over the collected scores
(`decide_batch`, about 20 numbers per customer: 160 MB per million), because it ranks the whole
base at once; so the decisions are those of `nba score --all` on one machine, and a test checks
they are identical.

The executors read the model registry at ``NBA_MODEL_REGISTRY``: on a cluster, a path every
executor mounts (a shared volume), like the snapshot.

Why Spark rather than Ray or Dask: it is the engine data teams already run next to their
warehouse, and it reads parquet where it lies; `pyspark` needs only Java 17 and py4j, and
runs in local mode (`local[N]`) for a laptop or the tests.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from model_export.batch_serving import batch_scorer
from model_export.features import logins_per_seat
from model_export.manifest import Registry
from model_export.serving import base_scores
from policies.catalog import CHANNELS, Catalog
from policies.decide import Decisions, PolicyConfig, Scores, decide_batch
from policies.rules import ContactState

if TYPE_CHECKING:  # pyspark is an optional extra: imported where it is used
    from pyspark.sql import SparkSession

__all__ = ["score_all_spark", "spark_session"]

_ROW = "_row"  # the snapshot's row order, carried through the shuffle


def spark_session(master: str, app_name: str = "nba-score") -> SparkSession:
    """A SparkSession (local mode with ``local[N]``) whose Python workers run this interpreter,
    with Arrow between the JVM and pandas."""
    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    return (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "8")
        # pandas writes timestamps in nanoseconds, which Spark reads only as numbers; scoring
        # reads no timestamp
        .config("spark.sql.legacy.parquet.nanosAsLong", "true")
        .getOrCreate()
    )


def score_all_spark(
    spark: SparkSession,
    snapshot: Path,
    registry_root: Path,
    catalog: Catalog,
    policy: PolicyConfig,
    budget: float,
    partitions: int,
) -> tuple[pd.DataFrame, Decisions, str]:
    """(customer ids in the snapshot's order, the decisions, the model version) for every
    customer of the ``snapshot`` parquet, scored in ``partitions`` Spark tasks."""
    from pyspark.sql import functions as F  # noqa: N812  # Spark's own idiom

    version = Registry(registry_root).chosen(None)
    frame = spark.read.parquet(str(snapshot)).withColumn(_ROW, F.monotonically_increasing_id())
    base = frame.select("logins_30d", "seats").toPandas()
    reference = spark.sparkContext.broadcast(np.sort(logins_per_seat(base)))
    actions = len(catalog.names)

    def score_part(chunks: Iterator[pd.DataFrame]) -> Iterator[pd.DataFrame]:
        scorer = batch_scorer(Registry(registry_root), catalog, version, threads=1)
        for chunk in chunks:
            scores, consent = base_scores(chunk, scorer, reference.value)
            yield _columns(chunk[_ROW].to_numpy(), scores, consent)

    scored = (
        frame.repartition(partitions)
        .mapInPandas(score_part, schema=_schema(actions))
        .toPandas()
        .sort_values(_ROW, kind="stable")
        .reset_index(drop=True)
    )
    scores, consent = _scores(scored, actions)
    state = ContactState.fresh(len(scores.customer_ids), consent)
    decisions = decide_batch(scores, state, policy, budget)
    return scored[["customer_id"]], decisions, version


def _schema(actions: int) -> str:
    fields = [f"{_ROW} long", "customer_id string", "p_churn double", "customer_value double"]
    fields += ["engagement double"]
    fields += [f"uplift_{a} double" for a in range(actions)]
    fields += [f"expansion_{a} double" for a in range(actions)]
    fields += [f"consent_{c} boolean" for c in CHANNELS]
    return ", ".join(fields)


def _columns(rows: NDArray[np.int64], scores: Scores, consent: NDArray[np.bool_]) -> pd.DataFrame:
    columns: dict[str, object] = {
        _ROW: rows,
        "customer_id": list(scores.customer_ids),
        "p_churn": scores.p_churn,
        "customer_value": scores.customer_value,
        "engagement": scores.engagement,
    }
    for a in range(scores.uplift_retention.shape[1]):
        columns[f"uplift_{a}"] = scores.uplift_retention[:, a]
        columns[f"expansion_{a}"] = scores.uplift_expansion[:, a]
    for k, channel in enumerate(CHANNELS):
        columns[f"consent_{channel}"] = consent[:, k]
    return pd.DataFrame(columns)


def _scores(scored: pd.DataFrame, actions: int) -> tuple[Scores, NDArray[np.bool_]]:
    ids = scored["customer_id"].astype(str).tolist()
    matrix = scored[[f"uplift_{a}" for a in range(actions)]].to_numpy(np.float64)
    expansion = scored[[f"expansion_{a}" for a in range(actions)]].to_numpy(np.float64)
    scores = Scores(
        customer_ids=ids,
        decision_keys=[f"batch:{c}" for c in ids],
        p_churn=scored["p_churn"].to_numpy(np.float64),
        uplift_retention=matrix,
        uplift_expansion=expansion,
        customer_value=scored["customer_value"].to_numpy(np.float64),
        engagement=scored["engagement"].to_numpy(np.float64),
    )
    consent = scored[[f"consent_{c}" for c in CHANNELS]].to_numpy(bool)
    return scores, consent
