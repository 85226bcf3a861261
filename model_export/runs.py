"""A training run on disk, without pickles: XGBoost's own JSON model files plus a JSON spec.

    <run>/spec.json        learner, actions, features, fingerprint, calibration, terms, metrics
    <run>/models/*.json    every tree model (xgboost ``save_model``)
    <run>/holdout.npy      held-out feature rows for the export's parity check
    <run>/report.html      the evaluation report
    <run>/design.skops     a project run's fitted design matrix (model_export.design)

The registry keeps, beside the ONNX bundle, the native models it was checked against
(``native.json``: the spec's model part and every model file; its SHA-256 in the manifest), which
batch scoring serves (model_export.serving.batch_scorer).

A project run (``nba train --project``) also names its project and outcome in the spec, and
models one outcome: the other learner is null and its bundle output all zeros.

`export_run` turns a run into a registered bundle, after the parity check.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from xgboost import XGBClassifier

from model_export.bundle import OPSET, OUTPUTS, build_bundle
from model_export.churn import ChurnModel
from model_export.drift_reference import REFERENCE_FILE, build_reference
from model_export.features import FEATURES
from model_export.learners import TreeModel, UpliftLearner
from model_export.manifest import (
    BASELINE_FILE,
    DESIGN_FILE,
    NATIVE_FILE,
    Feature,
    Manifest,
    Parity,
    ProjectBinding,
    Registry,
)
from model_export.native import load_models
from model_export.project_models import ProjectTrained
from model_export.training import Trained
from policies.errors import ModelManifestError

__all__ = ["PARITY_TOLERANCE", "export_run", "load_run", "save_project_run", "save_run"]

PARITY_TOLERANCE = 1e-5


def _save_model(model: TreeModel, path: Path) -> dict[str, str]:
    model.save_model(path)
    return {
        "file": path.name,
        "kind": "classifier" if isinstance(model, XGBClassifier) else "regressor",
    }


def _learner_spec(learner: UpliftLearner, prefix: str, models_dir: Path) -> dict[str, Any]:
    return {
        "name": learner.name,
        "n_actions": learner.n_actions,
        "outcome": learner.outcome,
        "terms": [[asdict(t) for t in terms] for terms in learner.terms_],
        "models": {
            key: _save_model(m, models_dir / f"{prefix}{key}.json")
            for key, m in learner.models_.items()
        },
    }


def save_run(trained: Trained, folder: Path, report_html: str) -> Path:
    """A run of the simulated world's models (retention and expansion)."""
    return _write_run(trained, list(FEATURES), folder, report_html, {})


def save_project_run(trained: ProjectTrained, folder: Path, report_html: str) -> Path:
    """A run of a project's models, with the design matrix that encodes its customers."""
    folder.mkdir(parents=True, exist_ok=True)
    design = trained.design.dumps()
    (folder / DESIGN_FILE).write_bytes(design)
    project = {
        "name": trained.project,
        "outcome": trained.outcome,
        "outcome_kind": "binary" if trained.binary else "continuous",
        "design_sha256": hashlib.sha256(design).hexdigest(),
    }
    return _write_run(
        trained, list(trained.design.names_), folder, report_html, {"project": project}
    )


def _write_run(
    trained: Trained | ProjectTrained,
    features: list[str],
    folder: Path,
    report_html: str,
    extra: dict[str, Any],
) -> Path:
    models_dir = folder / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    spec = {
        "learner": trained.learner,
        "actions": list(trained.actions),
        "features": features,
        "fingerprint": trained.fingerprint,
        "churn": {
            **_save_model(trained.churn.model_, models_dir / "churn.json"),
            "a": trained.churn.a_,
            "b": trained.churn.b_,
        },
        "retention": _optional_spec(trained.retention, "retention_", models_dir),
        "expansion": _optional_spec(trained.expansion, "expansion_", models_dir),
        "metrics": trained.metrics,
        **extra,
    }
    (folder / "spec.json").write_text(json.dumps(spec, indent=2))
    np.save(folder / "holdout.npy", trained.holdout_features, allow_pickle=False)
    (folder / "report.html").write_text(report_html)
    return folder


def _binding(folder: Path, spec: dict[str, Any]) -> ProjectBinding:
    baseline = (folder / "models" / spec["churn"]["file"]).read_bytes()
    return ProjectBinding(
        **spec["project"],
        baseline_sha256=hashlib.sha256(baseline).hexdigest(),
        platt_a=float(spec["churn"]["a"]),
    )


def _project_files(folder: Path) -> dict[str, bytes]:
    """What a project bundle needs beside the ONNX graph: its encoder and its explainer."""
    return {
        DESIGN_FILE: (folder / DESIGN_FILE).read_bytes(),
        BASELINE_FILE: (folder / "models" / "churn.json").read_bytes(),
    }


def _optional_spec(
    learner: UpliftLearner | None, prefix: str, models_dir: Path
) -> dict[str, Any] | None:
    return None if learner is None else _learner_spec(learner, prefix, models_dir)


def _native_payload(folder: Path, spec: dict[str, Any]) -> bytes:
    """The run's model spec and every XGBoost JSON model file, in one file for the registry."""
    models = {p.name: p.read_text() for p in sorted((folder / "models").glob("*.json"))}
    kept = {k: spec[k] for k in ("churn", "retention", "expansion")}
    return json.dumps({"spec": kept, "models": models}).encode()


def load_run(
    folder: Path,
) -> tuple[dict[str, Any], ChurnModel, UpliftLearner | None, UpliftLearner | None]:
    try:
        spec: dict[str, Any] = json.loads((folder / "spec.json").read_text())
    except OSError:
        raise ModelManifestError(
            f"{folder} is not a training run (no spec.json); make one with `nba train`"
        ) from None
    churn, retention, expansion = load_models(
        spec, lambda name: (folder / "models" / name).read_bytes()
    )
    return spec, churn, retention, expansion


def _parity(
    bundle: bytes,
    x: NDArray[np.float32],
    churn: ChurnModel,
    retention: UpliftLearner | None,
    expansion: UpliftLearner | None,
) -> float:
    session = ort.InferenceSession(bundle, providers=["CPUExecutionProvider"])
    p_churn, uplift, expansion_uplift = session.run(list(OUTPUTS), {"features": x})

    def native(learner: UpliftLearner | None) -> NDArray[np.float64]:
        return np.zeros(uplift.shape) if learner is None else learner.predict_uplift(x)

    return float(
        max(
            np.abs(p_churn[:, 0] - churn.predict_proba(x)).max(),
            np.abs(uplift - native(retention)).max(),
            np.abs(expansion_uplift - native(expansion)).max(),
        )
    )


def export_run(
    folder: Path, registry: Registry, version: str, tolerance: float = PARITY_TOLERANCE
) -> Manifest:
    """Build the bundle, check parity on the held-out rows, and only then register it."""
    spec, churn, retention, expansion = load_run(folder)
    native = _native_payload(folder, spec)
    actions = tuple(spec["actions"])
    model = build_bundle(spec["features"], actions, churn, retention, expansion, version)
    bundle = model.SerializeToString()
    holdout = np.load(folder / "holdout.npy", allow_pickle=False)
    diff = _parity(bundle, holdout, churn, retention, expansion)
    if not diff <= tolerance:
        raise ModelManifestError(
            f"parity check failed: the ONNX bundle differs from the native models by {diff:.2e} "
            f"(> {tolerance:.0e}) on {len(holdout)} held-out rows; nothing was written"
        )
    manifest = Manifest(
        version=version,
        created_at=datetime.now(UTC),
        learner=spec["learner"],
        features=tuple(Feature(name=f) for f in spec["features"]),
        actions=actions,
        outputs=OUTPUTS,
        training_data_fingerprint=spec["fingerprint"],
        metrics=spec["metrics"],
        onnx_sha256=hashlib.sha256(bundle).hexdigest(),
        onnx_opset=OPSET,
        parity=Parity(rows=len(holdout), max_abs_diff=diff, tolerance=tolerance, passed=True),
        project=_binding(folder, spec) if "project" in spec else None,
        native_sha256=hashlib.sha256(native).hexdigest(),
    )
    modelled = retention or expansion
    if modelled is None:
        raise ModelManifestError(f"{folder}/spec.json: the run models no outcome")
    report = folder / "report.html"
    reference = build_reference(
        holdout,
        spec["features"],
        {
            "p_churn": churn.predict_proba(holdout),
            "best_uplift": modelled.predict_uplift(holdout).max(axis=1),
        },
    )
    registry.write(
        manifest,
        bundle,
        report.read_text() if report.exists() else None,
        extras={REFERENCE_FILE: reference.model_dump_json()},
        files={NATIVE_FILE: native, **(_project_files(folder) if manifest.project else {})},
    )
    return manifest
