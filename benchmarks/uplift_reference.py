"""Our uplift learners against causalml's meta-learners on causalml's own synthetic generator
(`make_uplift_classification`, three treatments and a control), each under its own settings:
ours with the project's XGBoost settings and the known propensity (1/4), causalml's with
XGBoost's defaults (as causalml's own examples use them) and its own propensity handling (X and
DR fit their propensity model). Two generators: causalml's defaults, and one that adds negative
effects (``n_uplift_decrease_dict``). Per treatment, the best of ours (by mean Qini over the
seeds) against causalml's best, with a paired bootstrap of the held-out rows: the difference in
Qini with its standard error, and "win" or "loss" only where the 95% interval excludes zero.
Also: ONNX bundle vs native inference time at batch 1 and batch 512 (onnxruntime, 1 thread).

Run: `.venv/bin/python -m benchmarks.uplift_reference [--samples N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from dataclasses import dataclass
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
from model_export.learners import LEARNERS, make_learner

TREATMENTS = ["control", "treatment1", "treatment2", "treatment3"]
TREES = 200


def causalml_learners() -> dict[str, Any]:
    """causalml's meta-learners as its examples build them: XGBoost with its defaults."""
    return {
        "causalml S": BaseSClassifier(learner=XGBClassifier(), control_name="control"),
        "causalml T": BaseTClassifier(learner=XGBClassifier(), control_name="control"),
        "causalml X": BaseXClassifier(
            outcome_learner=XGBClassifier(), effect_learner=XGBRegressor(), control_name="control"
        ),
        "causalml DR": BaseDRLearner(learner=XGBRegressor(), control_name="control"),
    }


NEGATIVE = {
    "n_uplift_decrease_dict": {"treatment1": 2, "treatment2": 2, "treatment3": 2},
    "delta_uplift_decrease_dict": {"treatment1": 0.01, "treatment2": 0.02, "treatment3": 0.03},
}
SCENARIOS: dict[str, dict[str, Any]] = {"causalml_defaults": {}, "with_negative_effects": NEGATIVE}


def _data(
    samples: int, seed: int, scenario: dict[str, Any] | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    df, x_names = make_uplift_classification(
        n_samples=samples, treatment_name=TREATMENTS, random_seed=seed, **(scenario or {})
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


@dataclass(frozen=True)
class _Run:
    """One data set and split: the held-out rows and every learner's uplift on them."""

    y: np.ndarray
    t: np.ndarray
    uplift: dict[str, np.ndarray]


def _run(samples: int, seed: int, scenario: dict[str, Any]) -> _Run:
    x, t, y, _ = _data(samples, seed, scenario)
    test = np.random.default_rng(seed).random(len(t)) < 0.3
    uplift: dict[str, np.ndarray] = {}
    for name in LEARNERS:
        learner = make_learner(name, len(TREATMENTS), seed=0, n_estimators=TREES)
        learner.fit(x[~test], t[~test], y[~test], np.full((~test).sum(), 0.25))
        uplift[f"ours {name.upper()}"] = learner.predict_uplift(x[test])
    treatment_names = np.asarray(TREATMENTS)[t]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # causalml's own deprecation chatter
        for name, reference in causalml_learners().items():
            reference.fit(X=x[~test], treatment=treatment_names[~test], y=y[~test])
            effect = np.asarray(reference.predict(X=x[test]))
            uplift[name] = np.column_stack([np.zeros(test.sum()), effect])
    return _Run(y[test], t[test], uplift)


def _qini(run: _Run, learner: str, a: int, rows: np.ndarray) -> float:
    from sklift.metrics import qini_auc_score

    y, t, u = run.y[rows], run.t[rows], run.uplift[learner][rows, a]
    return float(qini_auc_score(y, u, (t == a).astype(int)))


def _paired_difference(
    runs: list[_Run], ours: str, theirs: str, a: int, rounds: int, seed: int
) -> dict[str, float | str]:
    """Mean over the runs of Qini(ours) - Qini(theirs), and its SE from a paired bootstrap of
    each run's held-out rows (the runs are independent: their variances add)."""
    rng = np.random.default_rng(seed)
    differences, variances = [], []
    for run in runs:
        rows = np.flatnonzero((run.t == a) | (run.t == 0))
        differences.append(_qini(run, ours, a, rows) - _qini(run, theirs, a, rows))
        draws = [rng.choice(rows, rows.size) for _ in range(rounds)]
        boot = [_qini(run, ours, a, d) - _qini(run, theirs, a, d) for d in draws]
        variances.append(float(np.var(boot, ddof=1)))
    mean = float(np.mean(differences))
    se = float(np.sqrt(np.sum(variances)) / len(runs))
    verdict = "win" if mean - 1.96 * se > 0 else "loss" if mean + 1.96 * se < 0 else "parity"
    return {"difference": round(mean, 5), "se": round(se, 5), "verdict": verdict}


def _table(runs: list[_Run]) -> dict[str, dict[str, dict[str, float]]]:
    """Mean Qini and AUUC over the runs, per learner and treatment."""
    reports = [
        {name: uplift_report(r.y, r.t, u, tuple(TREATMENTS)) for name, u in r.uplift.items()}
        for r in runs
    ]
    return {
        learner: {
            treatment: {
                metric: round(
                    float(np.mean([rep[learner][treatment][metric] for rep in reports])), 5
                )
                for metric in ("qini", "auuc")
            }
            for treatment in TREATMENTS[1:]
        }
        for learner in reports[0]
    }


def _scenario(runs: list[_Run], rounds: int, seed: int) -> dict[str, Any]:
    table = _table(runs)
    verdict = {}
    for a, treatment in enumerate(TREATMENTS[1:], start=1):
        ours = max((v[treatment]["qini"], k) for k, v in table.items() if k.startswith("ours"))
        theirs = max(
            (v[treatment]["qini"], k) for k, v in table.items() if k.startswith("causalml")
        )
        verdict[treatment] = {
            "ours_best": ours[1],
            "ours_qini": ours[0],
            "causalml_best": theirs[1],
            "causalml_qini": theirs[0],
            **_paired_difference(runs, ours[1], theirs[1], a, rounds, seed),
        }
    return {"table": table, "verdict": verdict}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=20_000, help="rows per treatment group")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeats", type=int, default=3, help="data sets (seeds) per scenario")
    parser.add_argument("--bootstrap", type=int, default=200, help="paired resamples per run")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for name, scenario in SCENARIOS.items():
        runs = [_run(args.samples, args.seed + r, scenario) for r in range(args.repeats)]
        results[name] = _scenario(runs, args.bootstrap, args.seed)
        print(name, json.dumps(results[name]["verdict"], indent=2), flush=True)
    x, t, y, names = _data(args.samples, args.seed)
    test = np.random.default_rng(args.seed).random(len(t)) < 0.3
    results["inference"] = _inference_speed(x[~test], t[~test], y[~test], names)
    path = write_result(
        "uplift_reference",
        {
            "samples_per_group": args.samples,
            "seed": args.seed,
            "repeats": args.repeats,
            "bootstrap": args.bootstrap,
            "our_trees": TREES,
            "test_share": 0.3,
            "scenarios": SCENARIOS,
        },
        results,
    )
    print(json.dumps(results["inference"], indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
