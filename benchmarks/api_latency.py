"""The decision API under load (issue 22): p50/p99 at a fixed request rate, measured by locust.

Set-up: the project's own Kafka and Redis; the ticket campaign (simulator/ticket_campaign.py)
imported, trained, exported, promoted and loaded into Feast; `nba worker` and `nba api serve`
as the processes an operator runs; locust (headless, a process of its own, FastHttpUser with
a constant rate per user) on the same 2-core machine. Each scenario runs at ``--rate``
requests/s for ``--seconds``:

- GET /v1/customers/{id}/decision (a customer decided before),
- GET /v1/customers/{id}/features,
- POST /v1/decisions (a new Idempotency-Key each time: every request is decided by the worker).

Baseline in the same run: the Feast SDK's online read of one customer (``get_online_features``,
what `/features` would cost through the SDK), and the engine's direct read (``read_batch``),
timed in this process.

Targets: p99 <= 10 ms for the GETs and <= 25 ms for the POST at 500 requests/s.

    .venv/bin/pip install locust==2.47.0   # once: the load generator is not a dependency
    .venv/bin/python -m benchmarks.api_latency [--rate 500] [--seconds 30] [--batch-wait 0.005]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import write_result
from benchmarks.end_to_end import _free_port, _settings
from features.project_repo import build_project_sources, materialize_window
from ingest.importer import import_project, imported_table
from ingest.project import load_project
from model_export.experiment import load_campaign
from model_export.manifest import Registry
from model_export.project_models import train_project
from model_export.runs import export_run, save_project_run
from nba.demo import _create_topics
from nba.local_servers import stack
from simulator.ticket_campaign import write_ticket_campaign
from stream_app.api.keys import KeyStore
from stream_app.settings import Settings
from stream_app.worker import project_feature_store

TARGETS_MS = {"get_decision": 10.0, "get_features": 10.0, "post_decision": 25.0}
LOCUSTFILE = """
import json, os, random, uuid
from locust import FastHttpUser, constant_throughput, task

KEY = os.environ["BENCH_KEY"]
CUSTOMERS = json.loads(open(os.environ["BENCH_CUSTOMERS"]).read())
SCENARIO = os.environ["BENCH_SCENARIO"]
RATE = float(os.environ["BENCH_USER_RATE"])


class Client(FastHttpUser):
    wait_time = constant_throughput(RATE)

    @task
    def call(self):
        customer = random.choice(CUSTOMERS)
        headers = {"X-API-Key": KEY}
        if SCENARIO == "get_decision":
            self.client.get(f"/v1/customers/{customer}/decision", headers=headers, name=SCENARIO)
        elif SCENARIO == "get_features":
            self.client.get(f"/v1/customers/{customer}/features", headers=headers, name=SCENARIO)
        else:
            headers |= {"Idempotency-Key": uuid.uuid4().hex, "Content-Type": "application/json"}
            body = json.dumps({"customer_id": customer})
            self.client.post("/v1/decisions", data=body, headers=headers, name=SCENARIO)
"""


def _prepared(root: Path, settings: Settings, customers: int) -> Settings:
    """The ticket campaign served: imported, trained, promoted, materialized; topics made."""
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
            "trigger_min_interval_s": 0.0,  # every POST is decided, not refused as too soon
            "pacing_start": datetime.now(UTC) - timedelta(days=1),
            "api_port": _free_port(),
            "api_keys_file": root / "api_keys.json",
        }
    )
    build_project_sources(project, imported, served.feature_data)
    store = project_feature_store(served, project)
    store.apply()
    store.materialize(*materialize_window(imported))
    names = [served.topic_events, served.topic_actions, served.topic_outcomes, served.topic_dlq]
    _create_topics(served, names)
    return served


def _start(settings: Settings, args: list[str], log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NBA_")}
    env |= settings.environment()
    with log.open("wb") as out:
        return subprocess.Popen(  # noqa: S603  # the CLI, as an operator runs it
            [sys.executable, "-m", "nba", *args], env=env, stdout=out, stderr=subprocess.STDOUT
        )


def _wait_ready(base: str, worker_log: Path, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base}/readyz", timeout=2) as response:  # noqa: S310
                if response.status == 200 and "worker: consuming" in worker_log.read_text():
                    return
        except OSError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"the API or the worker did not start: {worker_log.read_text()[-2000:]}")


def _post(base: str, key: str, customer: str) -> int:
    request = urllib.request.Request(  # noqa: S310  # a local URL of this benchmark
        f"{base}/v1/decisions",
        data=json.dumps({"customer_id": customer}).encode(),
        headers={
            "X-API-Key": key,
            "Content-Type": "application/json",
            "Idempotency-Key": uuid.uuid4().hex,
        },
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
        return int(response.status)


def _baseline(settings: Settings, customers: list[str], calls: int) -> dict[str, Any]:
    """One customer per call through the Feast SDK, and through the engine's direct read."""
    assert settings.project is not None
    store = project_feature_store(settings, load_project(settings.project))
    timings: dict[str, Any] = {}
    for name, read in (("feast_sdk_read", store.read), ("engine_read_batch", store.read_batch)):
        spent = []
        for k in range(calls):
            started = time.perf_counter()
            read([customers[k % len(customers)]])
            spent.append(1_000 * (time.perf_counter() - started))
        p50, p99 = np.percentile(spent[calls // 10 :], [50, 99])  # the first tenth warms up
        timings[name] = {"p50_ms": round(float(p50), 2), "p99_ms": round(float(p99), 2)}
    return timings


def _locust(
    root: Path, base: str, key: str, scenario: str, rate: float, seconds: int
) -> dict[str, Any]:
    users = max(int(rate // 10), 1)
    prefix = root / f"locust-{scenario}"
    env = os.environ | {
        "BENCH_KEY": key,
        "BENCH_CUSTOMERS": str(root / "customers.json"),
        "BENCH_SCENARIO": scenario,
        "BENCH_USER_RATE": str(rate / users),
    }
    locust = shutil.which("locust", path=str(Path(sys.executable).parent))
    if locust is None:
        raise SystemExit("locust is not installed: .venv/bin/pip install locust==2.47.0")
    command = [
        locust,
        "-f",
        str(root / "locustfile.py"),
        "--headless",
        "--host",
        base,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--csv",
        str(prefix),
        "--only-summary",
        "--loglevel",
        "WARNING",
    ]
    subprocess.run(command, env=env, check=False, capture_output=True)  # noqa: S603
    with Path(f"{prefix}_stats.csv").open() as fh:
        row = next(r for r in csv.DictReader(fh) if r["Name"] == scenario)
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    return {
        "requests": requests,
        "failures": failures,
        "requests_per_s": round(float(row["Requests/s"]), 1),
        "p50_ms": float(row["50%"]),
        "p90_ms": float(row["90%"]),
        "p99_ms": float(row["99%"]),
        "max_ms": float(row["Max Response Time"]),
        "target_p99_ms": TARGETS_MS[scenario],
        "within_target": failures == 0 and float(row["99%"]) <= TARGETS_MS[scenario],
    }


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    settings = _settings(root, uuid.uuid4().hex[:6]).model_copy(
        update={"batch_wait_s": args.batch_wait}
    )
    stack.up(settings, ["kafka", "redis"])
    processes: list[subprocess.Popen[bytes]] = []
    try:
        served = _prepared(root, settings, args.customers)
        key = KeyStore(served.keys_file).create("bench", ["read", "decide"])
        assert served.imported_data is not None
        ids = imported_table(served.imported_data, "customers")["customer_id"].astype(str)
        customers = ids.tolist()[: args.decided]
        (root / "customers.json").write_text(json.dumps(customers))
        (root / "locustfile.py").write_text(LOCUSTFILE)
        worker_log, api_log = root / "worker.log", root / "api.log"
        processes.append(_start(served, ["worker"], worker_log))
        processes.append(_start(served, ["api", "serve"], api_log))
        base = f"http://{served.api_host}:{served.api_port}"
        _wait_ready(base, worker_log)
        for customer in customers:  # each one's first decision, for the GET scenario
            assert _post(base, key, customer) == 201
        results: dict[str, Any] = {"baseline": _baseline(served, customers, args.baseline_calls)}
        for scenario in ("get_decision", "get_features", "post_decision"):
            results[scenario] = _locust(root, base, key, scenario, args.rate, args.seconds)
            print(scenario, json.dumps(results[scenario]))
        sdk = results["baseline"]["feast_sdk_read"]["p99_ms"]
        results["get_features_p99_vs_feast_sdk_read_p99"] = round(
            results["get_features"]["p99_ms"] / sdk, 2
        )
        return results
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
        stack.down(settings, ["kafka", "redis"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--seconds", type=int, default=30, help="per scenario")
    parser.add_argument("--customers", type=int, default=4_000, help="customers in the base")
    parser.add_argument("--decided", type=int, default=300, help="customers the GETs ask for")
    parser.add_argument("--baseline-calls", type=int, default=2_000)
    parser.add_argument(
        "--batch-wait", type=float, default=0.005, help="the worker's NBA_BATCH_WAIT_S"
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nba-api-latency-"))
    results = run(args, root)
    path = write_result("api_latency", vars(args), results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
