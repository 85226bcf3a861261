"""Our uplift learners against causalml's meta-learners on causalml's own synthetic generator
(`make_uplift_classification`, three treatments and a control), same split, same XGBoost base
learners, the same metric functions (scikit-uplift's Qini and AUUC, per treatment vs control).
Also: ONNX bundle vs native inference time at batch 1 and batch 512 (onnxruntime, 1 thread).

The target: for every treatment, our best learner's Qini at least matches causalml's best
meta-learner's. Run: `.venv/bin/python -m benchmarks.uplift_reference [--samples N]`.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from typing import Any

import numpy as np
import onnxruntime as ort
from causalml.dataset import make_uplift_classification
from causalml.inference.meta import BaseDRLearner, BaseSClassifier, BaseTClassifier, BaseXClassifier
from xgboost import XGBClassifier, XGBRegressor

from benchmarks._common import write_result
from model_export.bundle import OUTPUTS, build_bundle
from model_export.churn import ChurnModel
from model_export.evaluation import uplift_report
from model_export.learners import LEARNERS, base_model, make_learner

TREATMENTS = ["control", "treatment1", "treatment2", "treatment3"]
TREES = 200


def _xgb_classifier() -> XGBClassifier:
    model = base_model("classifier", 0, TREES)
    assert isinstance(model, XGBClassifier)
    return model


def _xgb_regressor() -> XGBRegressor:
    model = base_model("regressor", 0, TREES)
    assert isinstance(model, XGBRegressor)
    return model


def causalml_learners() -> dict[str, Any]:
    return {
        "causalml S": BaseSClassifier(learner=_xgb_classifier(), control_name="control"),
        "causalml T": BaseTClassifier(learner=_xgb_classifier(), control_name="control"),
        "causalml X": BaseXClassifier(
            outcome_learner=_xgb_classifier(),
            effect_learner=_xgb_regressor(),
            control_name="control",
        ),
        "causalml DR": BaseDRLearner(learner=_xgb_regressor(), control_name="control"),
    }


def _data(samples: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    df, x_names = make_uplift_classification(
        n_samples=samples, treatment_name=TREATMENTS, random_seed=seed
    )
    x = df[x_names].to_numpy(np.float32)
    t = (
        df["treatment_group_key"]
        .map({name: k for k, name in enumerate(TREATMENTS)})
        .to_numpy(np.int64)
    )
    return x, t, df["conversion"].to_numpy(np.float64), x_names


def _inference_speed(
    x: np.ndarray, t: np.ndarray, y: np.ndarray, names: list[str]
) -> dict[str, float]:
    retention = make_learner("t", len(TREATMENTS), seed=0, n_estimators=TREES).fit(
        x, t, y, np.full(len(t), 0.25)
    )
    expansion = make_learner("t", len(TREATMENTS), "regressor", seed=1, n_estimators=TREES).fit(
        x, t, y, np.full(len(t), 0.25)
    )
    churn = ChurnModel(seed=0, n_estimators=TREES).fit(x[t == 0], y[t == 0] == 0)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    bundle = build_bundle(
        names, TREATMENTS, churn, retention, expansion, "bench"
    ).SerializeToString()
    session = ort.InferenceSession(bundle, options, providers=["CPUExecutionProvider"])
    timings = {}
    for batch in (1, 512):
        rows = x[:batch]

        def native(rows: np.ndarray = rows) -> None:
            churn.predict_proba(rows)
            retention.predict_uplift(rows)
            expansion.predict_uplift(rows)

        def onnx(rows: np.ndarray = rows) -> None:
            session.run(list(OUTPUTS), {"features": rows})

        for name, fn in (("native", native), ("onnx", onnx)):
            fn()
            repeats = 200 if batch == 1 else 50
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            timings[f"{name}_batch{batch}_ms"] = round(
                (time.perf_counter() - start) / repeats * 1000, 3
            )
        timings[f"native_vs_onnx_batch{batch}"] = round(
            timings[f"native_batch{batch}_ms"] / timings[f"onnx_batch{batch}_ms"], 1
        )
    return timings


def _compare(samples: int, seed: int) -> dict[str, dict[str, dict[str, float]]]:
    """Qini and AUUC per learner and treatment on one data set and split."""
    x, t, y, _ = _data(samples, seed)
    test = np.random.default_rng(seed).random(len(t)) < 0.3
    scores: dict[str, dict[str, dict[str, float]]] = {}
    for name in LEARNERS:
        learner = make_learner(name, len(TREATMENTS), seed=0, n_estimators=TREES)
        learner.fit(x[~test], t[~test], y[~test], np.full((~test).sum(), 0.25))
        report = uplift_report(y[test], t[test], learner.predict_uplift(x[test]), tuple(TREATMENTS))
        scores[f"ours {name.upper()}"] = report
    treatment_names = np.asarray(TREATMENTS)[t]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # causalml's own deprecation chatter
        for name, reference in causalml_learners().items():
            reference.fit(X=x[~test], treatment=treatment_names[~test], y=y[~test])
            effect = np.asarray(reference.predict(X=x[test]))
            uplift = np.column_stack([np.zeros(test.sum()), effect])
            scores[name] = uplift_report(y[test], t[test], uplift, tuple(TREATMENTS))
    return scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=6_000, help="rows per treatment group")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--repeats", type=int, default=3, help="data sets and splits to average over"
    )
    args = parser.parse_args()
    per_seed = [_compare(args.samples, args.seed + r) for r in range(args.repeats)]
    table = {
        learner: {
            treatment: {
                metric: round(
                    float(np.mean([run[learner][treatment][metric] for run in per_seed])), 5
                )
                for metric in ("qini", "auuc")
            }
            for treatment in TREATMENTS[1:]
        }
        for learner in per_seed[0]
    }
    verdict = {}
    for treatment in TREATMENTS[1:]:
        ours = max((v[treatment]["qini"], k) for k, v in table.items() if k.startswith("ours"))
        theirs = max(
            (v[treatment]["qini"], k) for k, v in table.items() if k.startswith("causalml")
        )
        verdict[treatment] = {
            "ours_best": ours[1],
            "ours_qini": ours[0],
            "causalml_best": theirs[1],
            "causalml_qini": theirs[0],
            "ours_at_least_as_good": ours[0] >= theirs[0],
        }
    x, t, y, names = _data(args.samples, args.seed)
    test = np.random.default_rng(args.seed).random(len(t)) < 0.3
    speed = _inference_speed(x[~test], t[~test], y[~test], names)
    path = write_result(
        "uplift_reference",
        {
            "samples_per_group": args.samples,
            "seed": args.seed,
            "repeats": args.repeats,
            "trees": TREES,
            "test_share": 0.3,
        },
        {"table": table, "verdict": verdict, "inference": speed},
    )
    print(json.dumps({"verdict": verdict, "inference": speed}, indent=2))
    for label, per in table.items():
        print(
            f"{label:<14}",
            "  ".join(f"{k}: qini {v['qini']:.4f} auuc {v['auuc']:.4f}" for k, v in per.items()),
        )
    print(f"written: {path}")


if __name__ == "__main__":
    main()
