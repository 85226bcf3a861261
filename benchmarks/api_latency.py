"""The decision API under load (issue 22): p50/p99 at a fixed request rate, measured by vegeta.

Set-up: the project's own Kafka and Redis; the ticket campaign (simulator/ticket_campaign.py)
imported, trained, exported, promoted and loaded into Feast; `nba worker` and `nba api serve`
as the processes an operator runs; vegeta (Go, an open-model load at a constant rate: requests
leave on schedule however long the answers take) on the same 2-core machine. Each scenario runs
at ``--rate`` requests/s for ``--seconds``:

- GET /v1/customers/{id}/decision (a customer decided before),
- GET /v1/customers/{id}/features (any customer of the base),
- POST /v1/decisions (any customer of the base, a new Idempotency-Key each time: each request
  is decided by the worker, or answered 409 with the decision made a moment before for the same
  customer; a 202, not decided within NBA_API_DECISION_TIMEOUT_S, counts as a failure).

Baseline in the same run: the Feast SDK's online read of one customer (``get_online_features``,
what `/features` would cost through the SDK), and the engine's direct read (``read_batch``),
timed in this process.

Targets: p99 <= 10 ms for the GETs and <= 25 ms for the POST at 500 requests/s.

After each POST rate, the same load runs ``--profile-seconds`` more while py-spy samples the
worker's decide thread (``worker_profile``: the shares of its wall time by engine step and the
functions most often on top, benchmarks/profile_summary.py; py-spy from
``pip install -e '.[bench]'``).

    go install github.com/tsenart/vegeta/v12@v12.13.0   # once: the load generator (~30 s)
    .venv/bin/python -m benchmarks.api_latency [--rate 500] [--seconds 30] [--batch-wait 0.005]
"""

from __future__ import annotations

import argparse
import base64
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
import psutil

from benchmarks._common import write_result
from benchmarks.end_to_end import _free_port, _settings, add_overlap_argument
from benchmarks.profile_summary import record, summarize
from benchmarks.project_scoring import served_ticket_project
from ingest.importer import imported_table
from ingest.project import load_project
from nba.demo import _create_topics
from nba.local_servers import stack
from stream_app.api.keys import KeyStore
from stream_app.settings import Settings
from stream_app.worker import project_feature_store

TARGETS_MS = {"get_decision": 10.0, "get_features": 10.0, "post_decision": 25.0}
VEGETA = "github.com/tsenart/vegeta/v12@v12.13.0"
ANSWERED = {  # what counts as answered in time; a POST's 202 (not decided in time) does not
    "get_decision": {"200"},
    "get_features": {"200"},
    # decided now, or answered with the decision made a moment before for the same customer
    "post_decision": {"201", "409"},
}


def _prepared(root: Path, settings: Settings, customers: int) -> Settings:
    """The ticket campaign served: imported, trained, promoted, materialized; topics made."""
    served = served_ticket_project(root, settings, customers).model_copy(
        update={
            "trigger_min_interval_s": 0.0,  # every POST is decided, not refused as too soon
            "pacing_start": datetime.now(UTC) - timedelta(days=1),
            "api_port": _free_port(),
            "api_keys_file": root / "api_keys.json",
        }
    )
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


def _targets(
    scenario: str, base: str, key: str, decided: list[str], everyone: list[str], count: int
) -> str:
    """``count`` vegeta targets (its JSON format), one per request, customers drawn at random
    (a POST with a new Idempotency-Key each)."""
    rng = np.random.default_rng(0)
    decided_ids, all_ids = np.array(decided), np.array(everyone)
    lines = []
    for _ in range(count):
        headers = {"X-API-Key": [key]}
        if scenario == "get_decision":
            target = {
                "method": "GET",
                "url": f"{base}/v1/customers/{rng.choice(decided_ids)}/decision",
            }
        elif scenario == "get_features":
            target = {
                "method": "GET",
                "url": f"{base}/v1/customers/{rng.choice(all_ids)}/features",
            }
        else:
            body = json.dumps({"customer_id": str(rng.choice(all_ids))}).encode()
            headers |= {"Idempotency-Key": [uuid.uuid4().hex], "Content-Type": ["application/json"]}
            target = {
                "method": "POST",
                "url": f"{base}/v1/decisions",
                "body": base64.b64encode(body).decode(),
            }
        lines.append(json.dumps(target | {"header": headers}))
    return "\n".join(lines) + "\n"


def _vegeta() -> str:
    found = shutil.which("vegeta") or shutil.which("vegeta", path=str(Path.home() / "go/bin"))
    if found is None:
        raise SystemExit(f"vegeta is not installed: go install {VEGETA}")
    return found


def _attack(root: Path, targets: str, scenario: str, rate: float, seconds: int) -> dict[str, Any]:
    """An open-model load at a constant ``rate`` (vegeta sends on schedule whatever the answers
    take, so a slow answer shows in the latencies instead of slowing the load)."""
    vegeta = _vegeta()
    path = root / f"targets-{scenario}.jsonl"
    path.write_text(targets)
    attack = subprocess.run(  # noqa: S603  # the load generator, on this benchmark's files
        [
            vegeta,
            "attack",
            "-format=json",
            f"-targets={path}",
            f"-rate={rate:g}/s",
            f"-duration={seconds}s",
            "-timeout=30s",
            "-max-body=0",
        ],
        capture_output=True,
        check=True,
    )
    report = subprocess.run(  # noqa: S603
        [vegeta, "report", "-type=json"], input=attack.stdout, capture_output=True, check=True
    )
    found = json.loads(report.stdout)
    codes = {str(k): int(v) for k, v in found["status_codes"].items()}
    answered = sum(n for code, n in codes.items() if code in ANSWERED[scenario])
    ms = {k: v / 1e6 for k, v in found["latencies"].items()}
    return {
        "requests": int(found["requests"]),
        "status_codes": codes,
        "not_answered_in_time": int(found["requests"]) - answered,
        "requests_per_s": round(float(found["throughput"]), 1),
        "p50_ms": round(ms["50th"], 2),
        "p90_ms": round(ms["90th"], 2),
        "p99_ms": round(ms["99th"], 2),
        "max_ms": round(ms["max"], 2),
        "target_p99_ms": TARGETS_MS[scenario],
        "within_target": answered == int(found["requests"]) and ms["99th"] <= TARGETS_MS[scenario],
    }


def _profiled(root: Path, pid: int, targets: str, rate: float, seconds: int) -> dict[str, Any]:
    """The worker under the same load once more (new requests: ``targets`` of their own),
    sampled by py-spy: apart from the measured attack, so that the sampling (about 0.04 of a
    core) is not in its latencies."""
    recording = root / f"worker-post-{rate:g}.pyspy"
    spy = record(pid, seconds, recording)
    _attack(root, targets, "post_decision", rate, seconds)
    spy.wait(timeout=seconds + 60)
    return summarize(recording)


def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """Every process's CPU time so far."""

    seen = {}
    for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
        times, cmdline = process.info["cpu_times"], process.info["cmdline"] or []
        if times is not None:
            name = (
                " ".join(cmdline[1:4]) if "python" in process.info["name"] else process.info["name"]
            )
            seen[process.pid] = (name[:60], times.user + times.system)
    return seen


def _cpu_share(before: dict[int, tuple[str, float]], seconds: float) -> dict[str, float]:
    """Share of one core each process used since ``before``: where the machine's time went."""
    after = _cpu_seconds()
    used: dict[str, float] = {}
    for pid, (name, total) in after.items():
        spent = total - before.get(pid, (name, 0.0))[1]
        if spent > 0.01 * seconds:
            used[name] = round(used.get(name, 0.0) + spent / seconds, 2)
    return dict(sorted(used.items(), key=lambda kv: -kv[1]))


def _worker_steps(metrics_url: str) -> dict[str, float]:
    """Mean ms per micro-batch of each worker step, mean events per batch, and the mean time
    from an event's Kafka timestamp to its decision's publish (the worker's own histograms)."""
    from prometheus_client.parser import text_string_to_metric_families

    with urllib.request.urlopen(metrics_url, timeout=5) as response:  # noqa: S310
        text = response.read().decode()
    sums: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name.endswith(("_sum", "_count")):
                step = sample.labels.get("step", "")
                sums[f"{sample.name}:{step}"] = (
                    sums.get(f"{sample.name}:{step}", 0.0) + sample.value
                )
    means = {}
    for key, total in sums.items():
        name, step = key.split(":")
        if name.endswith("_sum") and sums.get(f"{name[:-4]}_count:{step}"):
            mean = total / sums[f"{name[:-4]}_count:{step}"]
            scale = 1.0 if "size" in name else 1_000.0
            means[(step or name[:-4]) + ("" if "size" in name else "_ms")] = round(mean * scale, 2)
    return means


def run(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    settings = _settings(root, uuid.uuid4().hex[:6]).model_copy(
        update={"batch_wait_s": args.batch_wait, "overlap_min_events": args.overlap_min_events}
    )
    stack.up(settings, ["kafka", "redis"])
    processes: list[subprocess.Popen[bytes]] = []
    try:
        served = _prepared(root, settings, args.customers)
        key = KeyStore(served.keys_file).create("bench", ["read", "decide"])
        assert served.imported_data is not None
        ids = imported_table(served.imported_data, "customers")["customer_id"].astype(str)
        everyone = ids.tolist()
        customers = everyone[: args.decided]
        worker_log, api_log = root / "worker.log", root / "api.log"
        processes.append(_start(served, ["worker"], worker_log))
        processes.append(_start(served, ["api", "serve"], api_log))
        base = f"http://{served.api_host}:{served.api_port}"
        _wait_ready(base, worker_log)
        for customer in customers:  # each one's first decision, for the GET scenario
            assert _post(base, key, customer) == 201
        results: dict[str, Any] = {"baseline": _baseline(served, customers, args.baseline_calls)}
        runs = [("get_decision", args.rate), ("get_features", args.rate)]
        runs += [("post_decision", rate) for rate in args.post_rates]
        for scenario, rate in runs:
            count = int(rate * args.seconds * 1.1) + 10
            targets = _targets(scenario, base, key, customers, everyone, count)
            before, started = _cpu_seconds(), time.monotonic()
            name = scenario if scenario != "post_decision" else f"post_decision@{rate:g}"
            results[name] = _attack(root, targets, scenario, rate, args.seconds)
            results[name]["cores_used"] = _cpu_share(before, time.monotonic() - started)
            if scenario == "post_decision" and args.profile_seconds > 0:
                seconds = int(args.profile_seconds)
                fresh = _targets(scenario, base, key, customers, everyone, int(rate * seconds) + 10)
                results[name]["worker_profile"] = _profiled(
                    root, processes[0].pid, fresh, rate, seconds
                )
            print(name, json.dumps(results[name]))
        metrics_url = f"http://127.0.0.1:{served.metrics_port}/metrics"
        results["worker_means_over_all_posts"] = _worker_steps(metrics_url)
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
    parser.add_argument(
        "--post-rates",
        type=lambda text: [float(r) for r in text.split(",")],
        default=[50.0, 200.0, 500.0],
        help="POST rates to measure, comma-separated (requests/s)",
    )
    parser.add_argument("--customers", type=int, default=4_000, help="customers in the base")
    parser.add_argument("--decided", type=int, default=300, help="customers the GETs ask for")
    parser.add_argument("--baseline-calls", type=int, default=2_000)
    parser.add_argument(
        "--batch-wait", type=float, default=0.005, help="the worker's NBA_BATCH_WAIT_S"
    )
    add_overlap_argument(parser)
    parser.add_argument(
        "--profile-seconds",
        type=float,
        default=10.0,
        help="after each POST rate, py-spy the worker under the same load this long (0: never)",
    )
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nba-api-latency-"))
    results = run(args, root)
    path = write_result("api_latency", vars(args), results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
