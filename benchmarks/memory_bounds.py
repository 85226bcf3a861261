"""Memory, measured: a worker holding the state of 1,000,000 customers, and `nba score --all`.

Targets (issue 21): the worker stays under 1.5 GB of peak RSS with every customer's state in
play (features in Feast's online store, streaming aggregates, last triggers, contact history,
stored decisions: the de-duplication record of each action_id), and `nba score --all` on
1,000,000 customers peaks under 4 GB.

The worker keeps that state in Redis, not in its own memory, so the claim to check is that its
RSS does not grow with the customers it has seen. One run: a world of ``--customers``, its
features materialized into Redis; one `nba worker` process; a first wave of one login (a
trigger) for each of ``--first-wave`` customers, then one for every other customer. Baseline in
the same run: the worker's peak RSS after the first wave; the ratio says how much the other
customers added. Redis's own memory is reported next to it (what the state costs the store per
customer). Then `nba score --all` as a process, on ``--first-wave`` customers and on all of
them (peak RSS of each from the kernel's rusage).

Run: `.venv/bin/python -m benchmarks.memory_bounds [--customers N] [--first-wave N]`
(starts its own Kafka broker and Redis on free ports; ~10 minutes at 1,000,000 customers).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import redis

from benchmarks._common import measured_run, peak_rss_mb, write_result
from benchmarks.end_to_end import _settings, _worker_env, start_worker
from nba.demo import _serve_features, _train_and_serve
from nba.local_servers import stack
from nba.observe import events_processed, wait_for_events
from nba.replay import replay_events
from simulator.config import validated
from simulator.events import EVENT_TYPES, EventBatch
from simulator.world import AS_OF, World, build_world
from stream_app import kafka_clients
from stream_app.settings import Settings

_MB = 1024 * 1024


def _logins(world: World, customers: np.ndarray, start_s: float) -> EventBatch:
    """One login (a trigger) per customer given, a millisecond apart, in time order."""
    n = customers.size
    return EventBatch(
        customer_index=customers.astype(np.int64),
        event_type=np.full(n, EVENT_TYPES.index("login"), dtype=np.int8),
        occurred_s=start_s + np.arange(n) / 1000.0,
        detail=np.zeros(n, dtype=np.int64),
        start=AS_OF,
        customer_ids=world.customers["customer_id"].to_numpy(dtype=np.str_),
        seed=0,
    )


def _wave(settings: Settings, events: EventBatch) -> dict[str, Any]:
    """Send the wave as fast as the producer goes, and time the worker through it."""
    before = events_processed(settings)
    started = time.perf_counter()
    sent = replay_events(events, kafka_clients.producer(settings), settings.topic_events, 1e7)
    wait_for_events(settings, before + sent.sent, 1_800)
    elapsed = time.perf_counter() - started
    return {"events": sent.sent, "seconds": round(elapsed, 1), "events_per_s": sent.sent / elapsed}


def _redis_memory(settings: Settings) -> dict[str, Any]:
    client = redis.Redis.from_url(settings.local_redis_url)
    info: dict[str, Any] = client.info("memory")  # type: ignore[assignment]  # sync client
    keys: int = client.dbsize()  # type: ignore[assignment]  # sync client
    client.close()
    return {
        "used_memory_mb": round(info["used_memory"] / _MB, 1),
        "used_memory_peak_mb": round(info["used_memory_peak"] / _MB, 1),
        "keys": keys,
    }


def _score_all(settings: Settings, world: World, count: int, root: Path) -> dict[str, Any]:
    """`nba score --all` as its own process on the first ``count`` customers."""
    data = root / f"snapshot-{count}"
    data.mkdir()
    world.customers.iloc[:count].to_parquet(data / "customers.parquet", index=False)
    argv = [sys.executable, "-m", "nba", "score", "--all", "--data", str(data)]
    argv += ["--out", str(root / f"decisions-{count}.parquet"), "--budget", f"{10.0 * count:.0f}"]
    return {"customers": count, **measured_run(argv, _worker_env(settings))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--first-wave", type=int, default=50_000)
    parser.add_argument("--train-customers", type=int, default=20_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nba-memory-bench-"))
    run = uuid.uuid4().hex[:6]
    settings = _settings(root, run)
    stack.up(settings, ["kafka", "redis"])
    worker = None
    results: dict[str, Any] = {}
    try:
        _train_and_serve(settings, build_world(validated(n_customers=args.train_customers)), run, 3)
        world = build_world(validated(n_customers=args.customers, seed=4))
        started = time.perf_counter()
        _serve_features(settings, world)
        results["materialize_s_not_counted"] = round(time.perf_counter() - started, 1)
        results["redis_after_materialize"] = _redis_memory(settings)
        worker = start_worker(settings, root / "worker.log")
        order = np.random.default_rng(5).permutation(world.n)
        first, rest = order[: args.first_wave], order[args.first_wave :]
        results["first_wave"] = _wave(settings, _logins(world, first, 0.0))
        results["first_wave"]["worker_peak_rss_mb"] = peak_rss_mb(worker.pid)
        results["all_customers"] = _wave(settings, _logins(world, rest, 7_200.0))
        results["all_customers"]["worker_peak_rss_mb"] = peak_rss_mb(worker.pid)
        results["customers_with_state"] = world.n
        results["redis_with_all_state"] = _redis_memory(settings)
        results["worker_rss_all_over_first_wave"] = round(
            results["all_customers"]["worker_peak_rss_mb"]
            / results["first_wave"]["worker_peak_rss_mb"],
            3,
        )
        results["worker_meets_1_5_gb"] = results["all_customers"]["worker_peak_rss_mb"] < 1_536
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=120)
        worker = None
        results["score_all_first_wave"] = _score_all(settings, world, args.first_wave, root)
        results["score_all"] = _score_all(settings, world, world.n, root)
        results["score_all_rss_over_first_wave"] = round(
            results["score_all"]["peak_rss_mb"] / results["score_all_first_wave"]["peak_rss_mb"], 2
        )
        results["score_all_meets_4_gb"] = results["score_all"]["peak_rss_mb"] < 4_096
    finally:
        if worker is not None:
            worker.send_signal(signal.SIGTERM)
            worker.wait(timeout=120)
        stack.down(settings, ["kafka", "redis"])
    path = write_result("memory_bounds", vars(args), results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
