"""Shared plumbing of the benchmark programs: machine facts and the JSON result file."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
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


def peak_rss_mb(pid: int) -> float:
    """The process's peak resident memory so far (Linux's VmHWM), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmHWM for process {pid}")


def measured_run(argv: list[str], env: Mapping[str, str]) -> dict[str, float]:
    """Run a command to its end: wall seconds and peak RSS (its VmHWM, read every 50 ms until
    it exits; a child's rusage would also count the memory this parent had when it forked)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=dict(env), stdout=subprocess.DEVNULL)  # noqa: S603
    peak = 0.0
    while process.poll() is None:
        with contextlib.suppress(FileNotFoundError, ProcessLookupError, RuntimeError):
            peak = max(peak, peak_rss_mb(process.pid))
        time.sleep(0.05)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed with exit code {process.returncode}")
    return {"seconds": round(time.perf_counter() - started, 1), "peak_rss_mb": peak}


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
