"""Attribution at scale: 1,000,000 journeys (simulator/journeys.py) attributed by the Markov
removal effect and by exact Shapley values. Target (issue 23): both under 60 s on this machine.

Baseline in the same run: last-touch attribution of the same paths (one pass, no model).

    .venv/bin/python -m benchmarks.attribution_speed [--journeys N]
"""

from __future__ import annotations

import argparse
import json

from attribution.models import last_touch, markov, paths, shapley, share_error, shares
from benchmarks._common import timed, write_result
from simulator.journeys import CHANNELS, simulate_journeys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    simulated, simulate_s = timed(lambda: simulate_journeys(args.journeys, args.seed))
    journeys, paths_s = timed(lambda: paths(simulated.touches, simulated.conversions))
    results: dict[str, object] = {
        "journeys": len(journeys),
        "touches": len(simulated.touches),
        "conversions": len(simulated.conversions),
        "simulate_s": round(simulate_s, 2),
        "paths_s": round(paths_s, 2),
    }
    for name, model in {"last_touch": last_touch, "markov": markov, "shapley": shapley}.items():
        credit, seconds = timed(lambda model=model: model(journeys))  # type: ignore[misc]
        results[name] = {
            "seconds": round(seconds, 2),
            "with_paths_s": round(seconds + paths_s, 2),
            "share_error": round(share_error(shares(credit, CHANNELS), simulated.truth), 4),
        }
    print(json.dumps(results, indent=2))
    print(f"wrote {write_result('attribution_speed', vars(args), results)}")


if __name__ == "__main__":
    main()
