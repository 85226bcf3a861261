"""Faults an SRE would try, under load, against one `nba worker` on real servers.

Each round runs on fresh topics, consumer group and budget period (the model and the features
are shared), replays ``--rate`` events/s for ``--seconds``, injects one fault a third of the way
in, and then reads what a CRM would see: the actions topic with ``isolation.level=
read_committed``. Kinds, in turn: ``none`` (the same-run baseline), ``kill9`` and ``sigterm``
(the benchmark restarts the worker at once, as Kubernetes would), ``kafka_outage`` and
``redis_outage`` (the server stopped for ``--outage-s``), ``redis_hang`` (SIGSTOP for
``--outage-s``), ``flushall``, ``poison`` (the demo's malformed records) and ``resend`` (a
third of the events sent again, same bytes).

Per round: events sent, trigger customers, actions read (messages and distinct action_ids),
duplicates (messages minus distinct ids), action_ids with two contents, lost triggers (trigger
customers without a decision), spend against the budget, whether the worker was still up
(or restarted only by the benchmark), and the recovery time: from the end of the fault until
the group has committed every event.

Run: `.venv/bin/python -m benchmarks.faults [--rounds 20] [--outage-s 60] [--seconds 15]`
(starts its own Kafka broker and Redis on free ports; about a minute and a half per round
with 60 s outages).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from benchmarks._common import write_result
from benchmarks.end_to_end import _settings, _worker_env
from nba.demo import POISON, _create_topics, _serve_features, _train_and_serve
from nba.local_servers import stack
from nba.replay import replay_events
from nba.topic_reader import read_to_end
from simulator.config import validated
from simulator.events import EventBatch, days_holding, generate_events
from simulator.world import World, build_world
from stream_app import kafka_clients
from stream_app.settings import Settings

KINDS = (
    "none",
    "kill9",
    "sigterm",
    "kafka_outage",
    "redis_outage",
    "redis_hang",
    "flushall",
    "poison",
    "resend",
)
BUDGET = 400.0  # binding: the pacer spends it over the round, so overspend would show


@dataclass
class Worker:
    """The worker process, restarted by the benchmark as an orchestrator would."""

    env: dict[str, str]
    log: Path
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    died_by_itself: int = 0

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(  # noqa: S603  # our own CLI
                [sys.executable, "-m", "nba", "worker"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def signal_and_restart(self, signum: int) -> None:
        assert self.process is not None
        self.process.send_signal(signum)
        self.process.wait(timeout=90)
        self.restarts += 1
        self.start()

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        """Until the worker says it consumes (its engine is built, its ledger opened)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if "worker: consuming" in self.log.read_text(errors="replace"):
                return
            self.check_alive()
            time.sleep(0.2)
        raise RuntimeError(f"the worker did not start; see {self.log}")

    def check_alive(self) -> None:
        """A worker that ended on its own is counted and restarted (the orchestrator's job)."""
        if self.process is not None and self.process.poll() is not None:
            self.died_by_itself += 1
            self.start()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=90)


def _round_settings(base: Settings, kind: str, k: int) -> Settings:
    run = f"{kind}-{k}-{uuid.uuid4().hex[:6]}"
    return base.model_copy(
        update={
            "topic_events": f"faults-events-{run}",
            "topic_actions": f"faults-actions-{run}",
            "topic_dlq": f"faults-dlq-{run}",
            "topic_outcomes": f"faults-outcomes-{run}",
            "consumer_group": f"faults-{run}",
            "budget": BUDGET,
            "budget_period": f"faults-{run}",
        }
    )


def _fault(
    kind: str,
    base: Settings,
    worker: Worker,
    events: EventBatch,
    settings: Settings,
    outage_s: float,
) -> Callable[[], None]:
    """What to do at the fault's moment; returns when the fault is over."""

    def down_for(service: str) -> Callable[[], None]:
        def run() -> None:
            stack.down(base, [service])
            time.sleep(outage_s)
            stack.up(base, [service])

        return run

    def hang() -> None:
        pid = stack.status(base, ["redis"])[0].pid
        assert pid is not None
        os.kill(pid, signal.SIGSTOP)
        time.sleep(outage_s)
        os.kill(pid, signal.SIGCONT)

    def poison() -> None:
        producer = kafka_clients.producer(settings)
        for value, headers in POISON:
            producer.produce(settings.topic_events, key=b"C00000001", value=value, headers=headers)
        producer.flush(30)

    def resend() -> None:
        lines = list(events.json_lines(0, len(events) // 3))
        producer = kafka_clients.producer(settings)
        for key, value in lines:
            producer.produce(
                settings.topic_events,
                key=key.encode(),
                value=value,
                headers=[("schema-version", b"1")],
            )
        producer.flush(30)

    def flushall() -> None:
        redis.Redis.from_url(base.local_redis_url).flushall()

    actions: dict[str, Callable[[], None]] = {
        "none": lambda: None,
        "kill9": lambda: worker.signal_and_restart(signal.SIGKILL),
        "sigterm": lambda: worker.signal_and_restart(signal.SIGTERM),
        "kafka_outage": down_for("kafka"),
        "redis_outage": down_for("redis"),
        "redis_hang": hang,
        "flushall": flushall,
        "poison": poison,
        "resend": resend,
    }
    return actions[kind]


_COORDINATOR_LOADING = {
    KafkaError.NOT_COORDINATOR,
    KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
    KafkaError.COORDINATOR_NOT_AVAILABLE,
    KafkaError._TIMED_OUT,
}


def _all_committed(consumer: Consumer, topic: str) -> bool:
    listed = consumer.list_topics(topic, timeout=10).topics
    parts = [TopicPartition(topic, p) for p in listed[topic].partitions]
    committed = consumer.committed(parts, timeout=10)
    ends = [consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in parts]
    return all(c.offset >= e for c, e in zip(committed, ends, strict=True))


def _caught_up(settings: Settings, timeout_s: float, worker: Worker) -> bool:
    """Wait until the worker's group has committed every event of the round's topic."""
    consumer = kafka_clients.consumer(settings, settings.consumer_group)
    deadline = time.monotonic() + timeout_s
    try:
        while time.monotonic() < deadline:
            worker.check_alive()
            try:
                if _all_committed(consumer, settings.topic_events):
                    return True
            except KafkaException as exc:
                # A restarted broker answers NOT_COORDINATOR (or times out) while it loads the
                # group coordinator: asked again on the next poll.
                if not exc.args[0].retriable() and exc.args[0].code() not in _COORDINATOR_LOADING:
                    raise
            time.sleep(1.0)
    finally:
        consumer.close()
    return False


def _read_committed(settings: Settings) -> list[bytes]:
    consumer = kafka_clients.consumer(
        settings, f"faults-reader-{uuid.uuid4().hex[:8]}", **{"isolation.level": "read_committed"}
    )
    consumer.subscribe([settings.topic_actions])
    try:
        return read_to_end(consumer, timeout_s=120)
    finally:
        consumer.close()


def _triggers(events: EventBatch, count: int, settings: Settings) -> set[str]:
    """Customers with a trigger among the events sent (each round is shorter than the 24 h
    trigger interval: one decision each)."""
    return {
        json.loads(value)["customer_id"]
        for _, value in events.json_lines(0, count)
        if json.loads(value)["event_type"] in settings.trigger_event_types
    }


def _round(
    base: Settings, world: World, kind: str, k: int, args: argparse.Namespace, root: Path
) -> dict[str, Any]:
    settings = _round_settings(base, kind, k)
    _create_topics(
        settings,
        [
            settings.topic_events,
            settings.topic_actions,
            settings.topic_dlq,
            settings.topic_outcomes,
        ],
    )
    if k == 0 or KINDS[(k - 1) % len(KINDS)] == "flushall":
        _serve_features(settings, world)  # (again) after a FLUSHALL emptied Redis
    count = int(args.rate * args.seconds)
    events = generate_events(world, days=days_holding(world, count), seed=100 + k)
    env = {
        **_worker_env(settings),
        # A restarted worker paces on the same curve (the round's start), as in production.
        "NBA_PACING_START": datetime.now(UTC).isoformat(),
        "NBA_PACING_PERIOD_S": str(args.seconds),
        "NBA_MAX_OUTAGE_S": str(max(4 * args.outage_s, 120)),
    }
    worker = Worker(env, root / f"worker-{k}-{kind}.log")
    worker.start()
    worker.wait_ready()
    sender = threading.Thread(
        target=replay_events,
        args=(events, kafka_clients.producer(settings), settings.topic_events, args.rate, count),
    )
    sender.start()
    time.sleep(args.seconds / 3)
    _fault(kind, base, worker, events, settings, args.outage_s)()
    fault_over = time.monotonic()
    sender.join()
    caught_up = _caught_up(settings, args.catch_up_s, worker)
    recovered_s = time.monotonic() - fault_over
    worker.stop()

    values = _read_committed(settings)
    actions = [json.loads(v) for v in values]
    contents: dict[str, set[bytes]] = {}
    for value, action in zip(values, actions, strict=True):
        contents.setdefault(action["action_id"], set()).add(value)
    firsts = {a["action_id"]: a for a in actions}
    decided = {a["customer_id"] for a in firsts.values()}
    triggers = _triggers(events, count, settings)
    spent = sum(a["cost"] for a in firsts.values())
    return {
        "kind": kind,
        "events_sent": count,
        "trigger_customers": len(triggers),
        "action_messages": len(actions),
        "distinct_action_ids": len(firsts),
        "duplicates_read_committed": len(actions) - len(firsts),
        "action_ids_with_two_contents": sum(1 for v in contents.values() if len(v) > 1),
        "lost_triggers": len(triggers - decided),
        "spent": round(spent, 2),
        "budget": BUDGET,
        "overspend": round(max(spent - BUDGET, 0.0), 2),
        "caught_up": caught_up,
        "recovered_s": round(recovered_s, 1),
        "restarts_by_benchmark": worker.restarts,
        "worker_died_by_itself": worker.died_by_itself,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--outage-s", type=float, default=60.0)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--rate", type=float, default=300.0)
    parser.add_argument("--customers", type=int, default=4_000)
    parser.add_argument("--catch-up-s", type=float, default=300.0)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="nba-faults-"))
    base = _settings(root, uuid.uuid4().hex[:6])
    stack.up(base, ["kafka", "redis"])
    rounds = []
    try:
        world = build_world(validated(n_customers=args.customers, seed=5))
        _train_and_serve(base, world, "faults", seed=5)
        for k in range(args.rounds):
            row = _round(base, world, KINDS[k % len(KINDS)], k, args, root)
            print(json.dumps(row), flush=True)
            rounds.append(row)
    finally:
        stack.down(base, ["kafka", "redis"])
    totals = {
        key: sum(r[key] for r in rounds)
        for key in (
            "duplicates_read_committed",
            "action_ids_with_two_contents",
            "lost_triggers",
            "worker_died_by_itself",
        )
    }
    totals["overspend"] = round(sum(r["overspend"] for r in rounds), 2)
    totals["rounds_caught_up"] = sum(1 for r in rounds if r["caught_up"])
    baseline = [r["recovered_s"] for r in rounds if r["kind"] == "none"]
    results = {
        "rounds": rounds,
        "totals": totals,
        "baseline_catch_up_s": sum(baseline) / len(baseline) if baseline else None,
        "logs": str(root),
    }
    path = write_result("faults", vars(args), results)
    print(json.dumps(totals, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
