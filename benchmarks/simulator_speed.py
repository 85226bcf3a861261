"""How fast the simulated world is made (target: 1,000,000 customers with snapshot and ground
truth in under a minute) and how fast it streams events (target: >= 100,000 events/s).

Baselines in the same run: drawing the same amount of raw random numbers with numpy (the floor
any generator pays), and `json.dumps` of the same events as plain dicts (the cost of merely
serializing them). Run: `.venv/bin/python -m benchmarks.simulator_speed [--customers N]`.
"""

from __future__ import annotations

import argparse
import json

import numpy as np

from benchmarks._common import timed, write_result
from simulator.config import WorldConfig
from simulator.events import generate_events
from simulator.world import build_world


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--event-customers", type=int, default=100_000)
    parser.add_argument("--json-events", type=int, default=200_000)
    args = parser.parse_args()

    world, build_s = timed(lambda: build_world(WorldConfig(n_customers=args.customers)))
    draws = world.n * (world.customers.shape[1] + 3 * len(world.actions))
    _, floor_s = timed(lambda: np.random.default_rng(0).random(draws))

    small = build_world(WorldConfig(n_customers=args.event_customers))
    events, events_s = timed(lambda: generate_events(small, days=1.0))
    n_json = min(args.json_events, len(events))
    _, json_s = timed(lambda: sum(1 for _ in events.json_lines(0, n_json)))
    frame = events.to_frame().head(n_json)
    dicts = frame.astype({"occurred_at": str}).to_dict("records")
    _, dumps_s = timed(lambda: [json.dumps(d) for d in dicts])

    results = {
        "world_build_s": round(build_s, 3),
        "world_customers_per_s": round(world.n / build_s),
        "raw_random_floor_s": round(floor_s, 3),
        "world_build_vs_random_floor": round(build_s / floor_s, 1),
        "events_generated": len(events),
        "events_generated_per_s": round(len(events) / events_s),
        "events_serialized_per_s": round(n_json / json_s),
        "plain_json_dumps_per_s": round(n_json / dumps_s),
        "serialize_vs_plain_dumps": round((n_json / json_s) / (n_json / dumps_s), 2),
        "meets_world_target_60s": build_s < 60.0,
        "meets_stream_target_100k_per_s": n_json / json_s >= 100_000,
    }
    parameters = {"customers": args.customers, "event_customers": args.event_customers, "days": 1.0}
    path = write_result("simulator_speed", parameters, results)
    print(json.dumps(results, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
