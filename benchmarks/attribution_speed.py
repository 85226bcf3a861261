"""Attribution at scale: 1,000,000 journeys (simulator/journeys.py) attributed by the Markov
removal effect and by exact Shapley values. Target (issue 23): both under 60 s on this machine.
The additive hazard model (attribution/hazard.py, which reads the site visits too) is timed
beside them, and each method's share error against the simulator's truth is recorded. The
sequence model (attribution/sequence.py, an LSTM) is trained and scored on a smaller set
(``--sequence-journeys``, default 100,000), with last touch and the hazard model on the same
set as its baselines.

Baseline in the same run: last-touch attribution of the same paths (one pass, no model).

    .venv/bin/python -m benchmarks.attribution_speed [--journeys N]
"""

from __future__ import annotations

import argparse
import json

from attribution.hazard import additive_hazard
from attribution.models import (
    journeys_from,
    last_touch,
    markov,
    shapley,
    share_error,
    shares,
    usable_touches,
)
from attribution.sequence import sequence_attribution
from benchmarks._common import timed, write_result
from simulator.journeys import CHANNELS, VISIT, simulate_journeys


def _sequence_set(n: int, seed: int) -> dict[str, object]:
    """The LSTM's AUCs, time and share error, with last touch and the hazard model beside it."""
    simulated = simulate_journeys(n, seed)
    usable, _ = usable_touches(simulated.touches, simulated.conversions)
    paid = usable[usable["channel"] != VISIT]

    def error(credit: dict[str, float]) -> float:
        return round(share_error(shares(credit, CHANNELS), simulated.truth), 4)

    fitted, seconds = timed(
        lambda: sequence_attribution(usable, simulated.conversions, (VISIT,), seed=seed)
    )
    return {
        "journeys": n,
        "sequence": {
            "seconds": round(seconds, 2),
            "touch_auc": round(fitted.touch_auc, 4),
            "journey_auc": round(fitted.journey_auc, 4),
            "held_out_journeys": fitted.held_out,
            "share_error": error(fitted.credit),
        },
        "last_touch_share_error": error(last_touch(journeys_from(paid, simulated.conversions))),
        "additive_hazard_share_error": error(
            additive_hazard(usable, simulated.conversions, (VISIT,))
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--sequence-journeys", type=int, default=100_000)
    args = parser.parse_args()
    simulated, simulate_s = timed(lambda: simulate_journeys(args.journeys, args.seed))
    (usable, _), usable_s = timed(lambda: usable_touches(simulated.touches, simulated.conversions))
    paid = usable[usable["channel"] != VISIT]
    journeys, journeys_s = timed(lambda: journeys_from(paid, simulated.conversions))
    paths_s = usable_s + journeys_s
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
    credit, seconds = timed(lambda: additive_hazard(usable, simulated.conversions, (VISIT,)))
    results["additive_hazard"] = {
        "seconds": round(seconds, 2),
        "with_usable_touches_s": round(seconds + usable_s, 2),
        "share_error": round(share_error(shares(credit, CHANNELS), simulated.truth), 4),
    }
    results["sequence_set"] = _sequence_set(args.sequence_journeys, args.seed)
    print(json.dumps(results, indent=2))
    print(f"wrote {write_result('attribution_speed', vars(args), results)}")


if __name__ == "__main__":
    main()
