"""Customer journeys whose truth is known: which touches caused which conversions
(`simulate_journeys`), for measuring attribution methods against it (attribution/).

Each customer has an intent ``u`` ~ Beta(1, 4) and would convert on their own with probability
``0.02 + 0.5 u`` (an organic conversion). Paid channels touch customers at random times over
``DAYS`` days; each touch independently causes a conversion with its channel's probability
(``EFFECTS``). A customer converts when the organic draw or any touch fires; the conversion
happens at the organic time or just after the first touch that fired. Credit for a caused
conversion goes to the first touch that fired (the one without which it would not have happened
then); organic conversions are nobody's credit.

Confounding, as in real logs: **retargeting** follows intent, not effect. It reaches customers
about to convert anyway (70% of the organic converters, an hour before) and almost never causes
anything, so last-touch credits it with conversions it did not earn.

Truth: ``truth[channel]`` is the share of caused conversions each channel caused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

__all__ = ["CHANNELS", "EFFECTS", "Journeys", "simulate_journeys"]

CHANNELS = ("search", "social", "email", "display", "retargeting")
EFFECTS = {"search": 0.060, "social": 0.025, "email": 0.040, "display": 0.010, "retargeting": 0.002}
_RATES = {"search": 0.9, "social": 1.2, "email": 1.0, "display": 2.0}  # touches per customer
_COSTS = {"search": 1.50, "social": 0.80, "email": 0.05, "display": 0.30, "retargeting": 0.60}
START = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 30


@dataclass(frozen=True)
class Journeys:
    touches: pd.DataFrame  # customer_id, touched_at, channel, campaign, cost
    conversions: pd.DataFrame  # customer_id, converted_at, value
    truth: dict[str, float]  # each channel's share of the conversions touches caused
    caused: dict[str, int]  # each channel's caused conversions (count)


def simulate_journeys(n: int, seed: int = 0) -> Journeys:
    rng = np.random.default_rng(seed)
    intent = rng.beta(1.0, 4.0, n)
    organic = rng.random(n) < 0.02 + 0.5 * intent
    organic_at = rng.uniform(0, DAYS * 24, n)  # hours from START
    rows: list[tuple[int, float, str]] = []
    for channel, rate in _RATES.items():
        counts = rng.poisson(rate, n)
        who = np.repeat(np.arange(n), counts)
        hours = rng.uniform(0, DAYS * 24, who.size).tolist()
        rows.extend(zip(who.tolist(), hours, [channel] * who.size, strict=True))
    retargeted = np.flatnonzero(organic & (rng.random(n) < 0.7))
    rows.extend((int(i), float(organic_at[i] - 1.0), "retargeting") for i in retargeted)
    touches = pd.DataFrame(rows, columns=["row", "hours", "channel"])
    touches = touches[touches["hours"] >= 0].sort_values(["row", "hours"], kind="stable")
    fired = rng.random(len(touches)) < touches["channel"].map(EFFECTS).to_numpy()
    first_fired = touches[fired].drop_duplicates("row")  # the earliest touch that fired
    converted = organic.copy()
    converted_at = np.where(organic, organic_at, np.inf)
    caused_by: dict[int, str] = {}
    for row, hours, channel in first_fired[["row", "hours", "channel"]].itertuples(index=False):
        if not organic[row] or hours < organic_at[row]:  # it made the conversion happen then
            if not organic[row]:
                caused_by[row] = channel
            converted[row] = True
            converted_at[row] = min(converted_at[row], hours + 0.5)
    ids = np.array([f"J{i}" for i in range(n)])
    touch_frame = pd.DataFrame(
        {
            "customer_id": ids[touches["row"].to_numpy()],
            "touched_at": [START + timedelta(hours=h) for h in touches["hours"]],
            "channel": touches["channel"].to_numpy(),
            "campaign": touches["channel"].to_numpy() + "-autumn",
            "cost": touches["channel"].map(_COSTS).to_numpy(),
        }
    )
    buyers = np.flatnonzero(converted)
    conversions = pd.DataFrame(
        {
            "customer_id": ids[buyers],
            "converted_at": [START + timedelta(hours=float(converted_at[i])) for i in buyers],
            "value": np.round(rng.gamma(2.0, 40.0, buyers.size), 2),
        }
    )
    caused = {c: sum(1 for v in caused_by.values() if v == c) for c in CHANNELS}
    total = max(sum(caused.values()), 1)
    return Journeys(
        touches=touch_frame,
        conversions=conversions,
        truth={c: caused[c] / total for c in CHANNELS},
        caused=caused,
    )
