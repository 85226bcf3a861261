"""A version's native XGBoost models, loaded from their JSON (a training run's models/ folder,
or the registry's ``native.json``): what the ONNX bundle's parity was checked against, and what
batch mode scores with (model_export.batch_serving). Kept apart from `runs` so that loading
them imports neither ONNX nor the project models' serializer."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from xgboost import XGBClassifier, XGBRegressor

from model_export.churn import ChurnModel
from model_export.learners import Term, TreeModel, UpliftLearner, make_learner

__all__ = ["ModelFiles", "NativeModels", "load_models", "native_models"]

# A model file's bytes by its name (a run's models/ folder, or a registry's native.json).
ModelFiles = Callable[[str], bytes]


def _load_model(files: ModelFiles, entry: dict[str, str]) -> TreeModel:
    model: TreeModel = XGBClassifier() if entry["kind"] == "classifier" else XGBRegressor()
    model.load_model(bytearray(files(entry["file"])))
    return model


def _load_learner(files: ModelFiles, spec: dict[str, Any]) -> UpliftLearner:
    learner = make_learner(spec["name"], spec["n_actions"], spec["outcome"])
    learner.models_ = {key: _load_model(files, entry) for key, entry in spec["models"].items()}
    learner.terms_ = [[_term(t) for t in terms] for terms in spec["terms"]]
    return learner


def _load_optional(files: ModelFiles, spec: dict[str, Any] | None) -> UpliftLearner | None:
    return None if spec is None else _load_learner(files, spec)


NativeModels = tuple[ChurnModel, UpliftLearner | None, UpliftLearner | None]


def load_models(spec: dict[str, Any], files: ModelFiles) -> NativeModels:
    """The churn model and the learners a run's spec describes, from their model files."""
    churn = ChurnModel()
    churn.model_ = _load_model(files, spec["churn"])
    churn.a_, churn.b_ = float(spec["churn"]["a"]), float(spec["churn"]["b"])
    return churn, _load_optional(files, spec["retention"]), _load_optional(files, spec["expansion"])


def _term(entry: dict[str, Any]) -> Term:
    augment = entry.get("augment")
    return Term(entry["model"], float(entry["coef"]), None if augment is None else tuple(augment))


def native_models(payload: bytes) -> NativeModels:
    """The native models of a registered version (its ``native.json``, written by
    `model_export.runs.export_run`)."""
    native = json.loads(payload)
    return load_models(native["spec"], lambda name: native["models"][name].encode())
