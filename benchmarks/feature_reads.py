"""Online feature reads for 1 and 500 customers: Feast's SDK (`get_online_features` through the
`nba_scoring` service) against a direct read in Feast's key format
(`FeatureStoreAdapter.read_batch`: same keys and values, one pipeline, no SDK response assembly)
and a raw Redis pipeline of HGETALL on the same keys (the floor: bytes only, nothing decoded).
Budget for the engine: 500 customers within 5 ms.

Needs a Redis: `nba infra up --only redis` (or NBA_REDIS_URL). Run:
`.venv/bin/python -m benchmarks.feature_reads [--customers N] [--repeats R]`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import redis
from feast.infra.online_stores.helpers import _redis_key
from feast.protos.feast.types.EntityKey_pb2 import EntityKey as EntityKeyProto
from feast.protos.feast.types.Value_pb2 import Value as ValueProto

from benchmarks._common import write_result
from nba.commands.features import build_sources
from simulator.config import WorldConfig
from simulator.world import AS_OF, build_world
from stream_app.feature_store import FeatureStoreAdapter
from stream_app.settings import load_settings


def _timings(fn: Callable[[], object], repeats: int) -> dict[str, float]:
    fn()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 3),
        "p95_ms": round(samples[int(0.95 * (len(samples) - 1))], 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=5_000)
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    settings = load_settings()
    world = build_world(WorldConfig(n_customers=args.customers, seed=3))
    root = Path(tempfile.mkdtemp(prefix="nba-feature-bench-"))
    build_sources(world, root / "data")
    project = f"bench{uuid.uuid4().hex[:6]}"
    store = FeatureStoreAdapter(settings, root / "repo", root / "data", project=project)
    store.apply()
    store.materialize(AS_OF - timedelta(days=2), AS_OF + timedelta(days=1))
    client = redis.Redis.from_url(settings.effective_redis_url())
    ids = world.customers["customer_id"].astype(str).tolist()
    results: dict[str, dict[str, dict[str, float]]] = {}
    for batch in (1, 500):
        chosen = ids[:batch]
        keys = [
            _redis_key(
                project,
                EntityKeyProto(join_keys=["customer_id"], entity_values=[ValueProto(string_val=c)]),
                3,
            )
            for c in chosen
        ]

        def raw(keys: list[bytes] = keys) -> None:
            with client.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)  # type: ignore[arg-type]  # redis-py takes bytes keys too
                pipe.execute()

        def sdk(chosen: list[str] = chosen) -> object:
            return store.read(chosen)

        def direct(chosen: list[str] = chosen) -> object:
            return store.read_batch(chosen)

        results[f"batch_{batch}"] = {
            "feast_sdk_get_online_features": _timings(sdk, args.repeats),
            "feast_key_format_direct_read": _timings(direct, args.repeats),
            "raw_redis_pipeline_hgetall": _timings(raw, args.repeats),
        }
    b500 = results["batch_500"]
    ratios = {
        "sdk_vs_direct_p50": round(
            b500["feast_sdk_get_online_features"]["p50_ms"]
            / b500["feast_key_format_direct_read"]["p50_ms"],
            2,
        ),
        "direct_vs_raw_p50": round(
            b500["feast_key_format_direct_read"]["p50_ms"]
            / b500["raw_redis_pipeline_hgetall"]["p50_ms"],
            2,
        ),
        "direct_meets_5ms_for_500": b500["feast_key_format_direct_read"]["p50_ms"] <= 5.0,
    }
    path = write_result(
        "feature_reads",
        {"customers": args.customers, "repeats": args.repeats, "views": 5},
        {"timings": results, "ratios": ratios},
    )
    client.close()
    print(json.dumps({"timings": results, "ratios": ratios}, indent=2))
    print(f"written: {path}")


if __name__ == "__main__":
    main()
