"""Shared plumbing of the benchmark programs: machine facts and the JSON result file."""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TypeVar

RESULTS = Path(__file__).resolve().parent / "results"
T = TypeVar("T")


def machine() -> dict[str, object]:
    packages: dict[str, str | None] = {}
    for name in (
        "numpy",
        "pandas",
        "scipy",
        "scikit-learn",
        "xgboost",
        "onnxruntime",
        "confluent-kafka",
    ):
        try:
            packages[name] = version(name)
        except PackageNotFoundError:
            packages[name] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "packages": packages,
    }


def timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def write_result(
    name: str, parameters: Mapping[str, object], results: Mapping[str, object]
) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    payload = {
        "benchmark": name,
        "ran_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "parameters": parameters,
        "results": results,
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
