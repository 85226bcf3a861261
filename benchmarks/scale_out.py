"""Scale-out on one machine: the same backlog drained by one `nba worker`, then by two in one
consumer group (issue 21: two workers should reach 1.7x one worker's throughput).

Set-up as benchmarks/end_to_end.py: the project's own Kafka and Redis, 20,000 customers, a
trained and promoted model, features in Feast. For each worker count, a fresh events topic of
``--partitions`` partitions (an even count, so that two workers hold equal shares) and a fresh
consumer group: the workers start, a warm-up at 1,000 events/s runs until every worker has
decided events (so each holds its partitions), then the workers are paused (SIGSTOP), the
backlog is queued, they are resumed, and the drain is timed from their own `nba_events_total`.
The CPU share of every process during the drain says where the cores went.

Baseline in the same run: one worker on the same backlog (the ratio is two workers' events/s
over one worker's).

    .venv/bin/python -m benchmarks.scale_out [--backlog 60000] [--partitions 6]
"""

from __future__ import annotations

import argparse
import json
import signal
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from benchmarks._common import peak_rss_mb, write_result
from benchmarks.api_latency import _cpu_seconds, _cpu_share, _start
from benchmarks.end_to_end import _free_port, _settings
from nba.demo import _create_topics, _serve_features, _train_and_serve
from nba.local_servers import stack
from nba.observe import events_processed_or_none, scrape
from nba.replay import replay_events
from simulator.config import validated
from simulator.events import days_holding, generate_events
from simulator.world import AS_OF, World, build_world
from stream_app import kafka_clients
from stream_app.settings import Settings

_WARMUP_RATE = 1_000.0
_WARMUP_START_DAYS = 30  # the warm-up's events, then the backlog's (as benchmarks/end_to_end.py)
_BACKLOG_START_DAYS = 300


def _consumed(each: list[Settings]) -> list[float]:
    return [events_processed_or_none(s) or 0.0 for s in each]


def _wait(
    each: list[Settings], done: Callable[[list[float]], bool], timeout_s: float, what: str
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done(_consumed(each)):
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: the workers consumed {_consumed(each)} in {timeout_s:.0f} s")


def _send(settings: Settings, world: World, count: int, rate: float, start_days: int) -> int:
    """``count`` events of the world from ``start_days`` after its snapshot (in the past: the
    engine refuses events from the future)."""
    events = generate_events(
        world,
        days=days_holding(world, count),
        start=AS_OF + timedelta(days=start_days),
        seed=start_days,
    )
    producer = kafka_clients.producer(settings)
    return replay_events(events, producer, settings.topic_events, rate, count).sent


def _drain(
    settings: Settings, world: World, workers: int, args: argparse.Namespace
) -> dict[str, Any]:
    """``workers`` workers in one group on a fresh topic: warmed up, then the backlog timed."""
    tag = f"{workers}w-{uuid.uuid4().hex[:4]}"
    shared = settings.model_copy(
        update={
            "topic_events": f"{settings.topic_events}-{tag}",
            "consumer_group": f"{settings.consumer_group}-{tag}",
            "topic_partitions": args.partitions,
        }
    )
    _create_topics(shared, [shared.topic_events])
    each = [shared.model_copy(update={"metrics_port": _free_port()}) for _ in range(workers)]
    processes = [
        _start(worker, ["worker"], settings.state_dir / f"worker-{tag}-{k}.log")
        for k, worker in enumerate(each)
    ]
    try:
        deadline, warmed = time.monotonic() + 180, 0
        while not all(n > 0 for n in _consumed(each)):  # each worker holds partitions
            if time.monotonic() > deadline:
                raise RuntimeError(f"warm-up: the workers consumed {_consumed(each)}")
            start_days = _WARMUP_START_DAYS + warmed // args.warmup_events
            warmed += _send(shared, world, args.warmup_events, _WARMUP_RATE, start_days)
            time.sleep(2.0)
        _wait(each, lambda seen: sum(seen) >= warmed, 120, "warm-up")
        before = sum(_consumed(each))
        for process in processes:
            process.send_signal(signal.SIGSTOP)  # short enough to keep their partitions
        try:
            queued = _send(shared, world, args.backlog, 1e7, _BACKLOG_START_DAYS)
        finally:
            for process in processes:
                process.send_signal(signal.SIGCONT)
        cpu, started = _cpu_seconds(), time.perf_counter()
        _wait(each, lambda seen: sum(seen) >= before + queued, 600, "drain")
        elapsed = time.perf_counter() - started
        rejected = sum(sum(scrape(w, "nba_events_invalid_total{").values()) for w in each)
        if rejected > 0.01 * queued:  # then it timed the DLQ, not decisions
            raise RuntimeError(f"{rejected:,.0f} of {queued:,} events were rejected: see the DLQ")
        consumed = _consumed(each)
        shares = [round(n / max(sum(consumed), 1.0), 3) for n in consumed]
        return {
            "workers": workers,
            "partitions": args.partitions,
            "backlog": queued,
            "rejected": rejected,
            "seconds": round(elapsed, 2),
            "events_per_s": round(queued / elapsed, 1),
            "share_of_events_per_worker": shares,
            "cores_used": _cpu_share(cpu, elapsed),
            "peak_rss_mb_per_worker": [peak_rss_mb(p.pid) for p in processes],
        }
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            process.wait(timeout=60)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--backlog", type=int, default=60_000)
    parser.add_argument("--partitions", type=int, default=6, help="of each events topic")
    parser.add_argument("--warmup-events", type=int, default=2_000)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nba-scale-out-"))
    settings = _settings(root, uuid.uuid4().hex[:6])
    stack.up(settings, ["kafka", "redis"])
    try:
        world = build_world(validated(n_customers=args.customers, seed=3))
        _train_and_serve(settings, world, "scale", seed=3)
        _serve_features(settings, world)
        _create_topics(
            settings, [settings.topic_actions, settings.topic_outcomes, settings.topic_dlq]
        )
        one = _drain(settings, world, 1, args)
        print("one worker", json.dumps(one))
        two = _drain(settings, world, 2, args)
        print("two workers", json.dumps(two))
        results = {
            "one_worker": one,
            "two_workers": two,
            "two_over_one": round(two["events_per_s"] / one["events_per_s"], 2),
            "target_two_over_one": 1.7,
        }
    finally:
        stack.down(settings, ["kafka", "redis"])
    path = write_result("scale_out", vars(args), results)
    print(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
