"""A project's scorer per micro-batch: what a worker serving a project (and so every POST of the
decision API) pays to score a few customers, against the library paths it replaced.

Set-up: the project's own Redis; the ticket-saves project (simulator/ticket_campaign.py)
imported, trained, promoted and materialized into Feast; a live week of events
(``live_week``: tickets and logins) for every customer in the worker's windows. The scorer is
built as `nba worker` builds it (stream_app.worker).

Measured, for micro-batches of 1, 10 and 100 triggers (``--calls`` batches each, after a tenth
as many to warm up), p50 / p99 in ms:

- ``scores``: the whole ProjectScoreSource.scores (Feast read, live event features and their
  write to Feast, design matrix, bundle, risk drivers, consent);
- ``design_matrix``: DesignMatrix.transform, against scikit-learn's own
  ColumnTransformer.transform of the same frame (the baseline; same matrix, checked);
- ``event_features``: the stream's executor (customer_event_features) on the batch's stored
  events, against the batch executor (features.event_features, pandas) on the same events (the
  baseline; same values, checked).

And the design matrix of the whole base repeated to 1,000,000 rows (``nba score --all``'s
step), against scikit-learn's.

    .venv/bin/python -m benchmarks.project_scoring [--calls 500]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from benchmarks._common import write_result
from benchmarks.end_to_end import _settings
from features.event_features import StoredEvent, customer_event_features, event_features
from features.project_repo import build_project_sources, materialize_window
from ingest.importer import import_project, imported_table
from ingest.project import load_project
from model_export.design import DesignMatrix
from model_export.experiment import load_campaign
from model_export.manifest import Registry
from model_export.project_models import train_project
from model_export.runs import export_run, save_project_run
from nba.local_servers import stack
from simulator.ticket_campaign import live_week, write_ticket_campaign
from stream_app.event_windows import EventWindowStore
from stream_app.messages import EngagementEvent, events_from_frame
from stream_app.project_source import ProjectScoreSource
from stream_app.redis_clients import redis_client
from stream_app.scorer import ServedModel
from stream_app.settings import Settings
from stream_app.worker import (
    _windows,
    policy_config,
    project_feature_store,
    project_score_source,
)

BATCH_SIZES = (1, 10, 100)


def served_ticket_project(root: Path, settings: Settings, customers: int) -> Settings:
    """The ticket project imported, trained, promoted and in Feast (also benchmarks.api_latency's
    set-up)."""
    project_file = write_ticket_campaign(root, n=customers)
    project = load_project(project_file)
    _, imported = import_project(project, root / "imported")
    trained = train_project(load_campaign(imported, project), "t", seed=0, n_estimators=100)
    registry = Registry(root / "registry")
    export_run(save_project_run(trained, root / "run", ""), registry, "tickets-1")
    registry.promote("tickets-1")
    served = settings.model_copy(
        update={
            "project": project_file,
            "imported_data": imported,
            "model_registry": registry.root,
        }
    )
    build_project_sources(project, imported, served.feature_data)
    store = project_feature_store(served, project)
    store.apply()
    store.materialize(*materialize_window(imported))
    return served


def _scorer(settings: Settings) -> ProjectScoreSource:
    """The scorer as `nba worker` builds it for a project."""
    assert settings.project is not None
    project = load_project(settings.project)
    store = project_feature_store(settings, project)
    model = ServedModel(
        Registry(settings.model_registry),
        policy_config(settings).catalog,
        settings.model_reload_s,
        None,
        project,
    )
    return project_score_source(settings, project, model, store, redis_client(settings))


def _percentiles(spent_s: list[float]) -> dict[str, float]:
    p50, p99 = np.percentile(np.asarray(spent_s) * 1_000, [50, 99])
    return {"p50_ms": round(float(p50), 3), "p99_ms": round(float(p99), 3)}


def _timed(calls: int, run: Callable[[int], object]) -> dict[str, float]:
    for k in range(max(calls // 10, 1)):  # warm-up
        run(k)
    spent = []
    for k in range(calls):
        started = time.perf_counter()
        run(k)
        spent.append(time.perf_counter() - started)
    return _percentiles(spent)


def _table(events: list[list[StoredEvent]], customers: list[str]) -> pd.DataFrame:
    """The stored events as the batch executor's events table."""
    rows = [
        {
            "event_id": e.event_id,
            "customer_id": customer,
            "event_type": e.event_type,
            "occurred_at": pd.Timestamp(e.us, unit="us", tz="UTC"),
            "severity": e.properties.get("severity"),
        }
        for customer, mine in zip(customers, events, strict=True)
        for e in mine
    ]
    columns = ["event_id", "customer_id", "event_type", "occurred_at", "severity"]
    return pd.DataFrame(rows, columns=columns)


def _live_week_in_windows(settings: Settings, ids: list[str]) -> None:
    """A week of tickets and logins for every customer, into the worker's windows."""
    assert settings.project is not None
    windows = _windows(settings, load_project(settings.project))
    assert windows is not None
    week = live_week(ids, datetime.now(UTC) - timedelta(minutes=1))
    events = list(events_from_frame(week, ["severity"]))
    for start in range(0, len(events), 5_000):
        windows.add(events[start : start + 5_000])


def _scored(source: ProjectScoreSource, batches: list[list[str]]) -> Callable[[int], None]:
    """Batch k through the scorer as a worker runs it: observed, then scored."""

    def run(k: int) -> None:
        now = datetime.now(UTC)
        events = [
            EngagementEvent(
                event_id=uuid.uuid4().hex,
                customer_id=customer,
                event_type="decision_requested",
                occurred_at=now,
            )
            for customer in batches[k]
        ]
        source.observe([(None, e) for e in events])  # type: ignore[misc]  # no raw record here
        source.scores(batches[k], [e.event_id for e in events])

    return run


def micro_batches(
    source: ProjectScoreSource, ids: list[str], size: int, calls: int
) -> dict[str, Any]:
    """The scorer and its two replaced steps on ``calls`` micro-batches of ``size``."""
    windows, design = source._windows, source.model.design
    assert isinstance(windows, EventWindowStore) and isinstance(design, DesignMatrix)
    rng = np.random.default_rng(size)
    batches = [rng.choice(ids, size, replace=False).tolist() for _ in range(calls + calls // 10)]
    now = datetime.now(UTC)
    at_us = (now - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    stored = [windows.stored(b, [now] * size) for b in batches]
    asked = [pd.DataFrame({"customer_id": b, "at": pd.Timestamp(now)}) for b in batches]
    live = [windows.rows(b, now) for b in batches]
    frames = [
        source._store.read_batch(b).assign(
            **{f.name: [r[f.name] for r in rows] for f in windows.declared}
        )
        for b, rows in zip(batches, live, strict=True)
    ]

    def stream_features(k: int) -> list[dict[str, float]]:
        return [customer_event_features(e, at_us, windows.declared) for e in stored[k]]

    def batch_features(k: int) -> pd.DataFrame:
        return event_features(_table(stored[k], batches[k]), asked[k], windows.declared)

    def library_matrix(k: int) -> Any:
        return design.transformer_.transform(design._prepared(frames[k]))

    for k in range(len(batches)):  # the same results, or the timing compares nothing
        np.testing.assert_array_equal(design.transform(frames[k]), library_matrix(k))
        expected = batch_features(k)
        got = pd.DataFrame(stream_features(k), columns=expected.columns)
        np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), atol=1e-9)
    return {
        "scores": _timed(calls, _scored(source, batches)),
        "design_matrix": _timed(calls, lambda k: design.transform(frames[k])),
        "design_matrix_scikit_learn": _timed(calls, library_matrix),
        "event_features": _timed(calls, stream_features),
        "event_features_pandas": _timed(calls, batch_features),
        "live_events_per_batch": round(float(np.mean([sum(map(len, s)) for s in stored])), 1),
    }


def whole_base(source: ProjectScoreSource, ids: list[str], rows: int) -> dict[str, Any]:
    """The design matrix of the base repeated to ``rows`` rows, and scikit-learn's."""
    design, windows = source.model.design, source._windows
    assert isinstance(design, DesignMatrix) and isinstance(windows, EventWindowStore)
    profile = source._store.read_batch(ids).assign(**{f.name: 0.0 for f in windows.declared})
    frame = profile.sample(rows, replace=True, random_state=0).reset_index(drop=True)
    ours, ours_s = _once(lambda: design.transform(frame))
    theirs, theirs_s = _once(lambda: design.transformer_.transform(design._prepared(frame)))
    np.testing.assert_array_equal(ours, theirs)
    return {
        "rows": rows,
        "design_matrix_s": round(ours_s, 3),
        "design_matrix_scikit_learn_s": round(theirs_s, 3),
    }


def _once(run: Callable[[], Any]) -> tuple[Any, float]:
    started = time.perf_counter()
    result = run()
    return result, time.perf_counter() - started


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    settings = _settings(root, uuid.uuid4().hex[:6])
    stack.up(settings, ["redis"])
    try:
        served = served_ticket_project(root, settings, args.customers)
        assert served.imported_data is not None
        ids = imported_table(served.imported_data, "customers")["customer_id"].astype(str).tolist()
        _live_week_in_windows(served, ids)
        source = _scorer(served)
        results: dict[str, Any] = {}
        for size in BATCH_SIZES:
            results[f"batch_of_{size}"] = found = micro_batches(source, ids, size, args.calls)
            print(size, json.dumps(found))
        results["whole_base"] = whole_base(source, ids, args.base_rows)
        for size in BATCH_SIZES:
            found = results[f"batch_of_{size}"]
            found["scikit_learn_over_design_matrix_p50"] = round(
                found["design_matrix_scikit_learn"]["p50_ms"] / found["design_matrix"]["p50_ms"], 1
            )
            found["pandas_over_event_features_p50"] = round(
                found["event_features_pandas"]["p50_ms"] / found["event_features"]["p50_ms"], 1
            )
        return results
    finally:
        stack.down(settings, ["redis"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=4_000, help="customers in the base")
    parser.add_argument("--calls", type=int, default=500, help="micro-batches per size")
    parser.add_argument("--base-rows", type=int, default=1_000_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nba-project-scoring-"))
    results = run(args, root)
    path = write_result("project_scoring", vars(args), results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
