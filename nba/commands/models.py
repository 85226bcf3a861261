"""`nba train | export | evaluate | models`: from simulated (or real) experiment data to a
registered, promoted ONNX bundle."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from model_export.bundle import OUTPUTS
from model_export.evaluation import uplift_report
from model_export.features import FEATURES, feature_matrix, training_frame
from model_export.manifest import Manifest, Registry
from model_export.report import render_report
from model_export.runs import export_run, save_run
from model_export.training import train_models, true_uplift
from policies.catalog import default_catalog

__all__ = ["evaluate_version", "run_export", "run_training"]

_STEPS = 5


def _optional(data_dir: Path, name: str) -> pd.DataFrame | None:
    path = data_dir / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def run_training(
    data_dir: Path, learner: str, seed: int, out: Path | None, console: Console
) -> Path:
    experiment = training_frame(data_dir, "experiment")
    actions = default_catalog().names
    folder = out or Path("models/runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with Progress(console=console) as progress:
        task = progress.add_task("training", total=_STEPS)

        def step(name: str) -> None:
            progress.update(task, advance=1, description=name)

        trained = train_models(
            experiment,
            actions,
            learner,
            seed,
            truth=_optional(data_dir, "truth"),
            legacy=_optional(data_dir, "history"),
            on_step=step,
        )
        step("report")
        save_run(trained, folder, render_report(trained, f"nba model run {folder.name}"))
        progress.update(task, completed=_STEPS, description="done")
    return folder


def run_export(run: Path, registry: Registry, version: str | None) -> Manifest:
    return export_run(run, registry, version or run.name)


def evaluate_version(registry: Registry, version: str, data_dir: Path) -> dict[str, Any]:
    """Score a data set with the registered bundle itself (onnxruntime) and report the metrics."""
    manifest = registry.verified(version)
    manifest.check_serves(FEATURES, default_catalog().names)
    frame = training_frame(data_dir, "experiment")
    session = ort.InferenceSession(
        str(registry.bundle_path(version)), providers=["CPUExecutionProvider"]
    )
    _, uplift, _ = session.run(list(OUTPUTS), {"features": feature_matrix(frame)})
    truth = _optional(data_dir, "truth")
    true = true_uplift(truth, frame["customer_id"], manifest.actions) if truth is not None else None
    return uplift_report(
        frame["retained"].to_numpy(np.float64),
        frame["treatment_index"].to_numpy(np.int64),
        uplift.astype(np.float64),
        manifest.actions,
        true,
    )


def describe(manifest: Manifest, champion: str | None) -> str:
    mark = "*" if manifest.version == champion else " "
    parity = f"parity {manifest.parity.max_abs_diff:.1e}"
    created = f"{manifest.created_at:%Y-%m-%d %H:%M}"
    return f"{mark} {manifest.version:<24} {manifest.learner:<3} {created} {parity}"


def dump(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)
