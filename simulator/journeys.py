"""Customer journeys whose truth is known: which touches caused which conversions
(`simulate_journeys`), for measuring attribution methods against it (attribution/).

Each customer has an intent ``u`` ~ Beta(1, 4) and would convert on their own with probability
``0.02 + 0.5 u`` (an organic conversion). Paid channels touch customers at random times over
``DAYS`` days; each touch independently causes a conversion with its channel's probability
(``EFFECTS``). A customer converts when the organic draw or any touch fires; the conversion
happens at the organic time or just after the first touch that fired. Credit for a caused
conversion goes to the first touch that fired (the one without which it would not have happened
then); organic conversions are nobody's credit.

Site visits are logged as touches of the unpaid channel ``direct`` (cost 0), as web analytics
log them: a customer about to convert on their own visits a few hours before (``VISIT_LEAD_H``
on average), and customers browse without buying, more often the higher their intent
(``BROWSE_PER_INTENT``). Visits cause nothing.

Confounding, as in real logs: **retargeting** follows intent, not effect. It reaches a share of
the visitors (``RETARGETED``) within two hours of their visit, so it lands just before most
organic conversions and almost never causes anything; last touch credits it with conversions it
did not earn. With ``visits_logged=False`` the visits stay out of the log: retargeting then
follows a signal no method can see.

Truth: ``truth[channel]`` is the share of caused conversions each paid channel caused.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

__all__ = ["CHANNELS", "EFFECTS", "VISIT", "Journeys", "simulate_journeys"]

CHANNELS = ("search", "social", "email", "display", "retargeting")  # the paid channels
VISIT = "direct"  # a logged site visit: no cost, no campaign, no effect
EFFECTS = {"search": 0.060, "social": 0.025, "email": 0.040, "display": 0.010, "retargeting": 0.002}
_RATES = {"search": 0.9, "social": 1.2, "email": 1.0, "display": 2.0}  # touches per customer
_COSTS = {"search": 1.50, "social": 0.80, "email": 0.05, "display": 0.30, "retargeting": 0.60}
VISIT_LEAD_H = 6.0  # mean hours from an organic converter's visit to the conversion
BROWSE_PER_INTENT = 3.0  # browsing visits (without buying) per customer, per unit of intent
RETARGETED = 0.7  # the share of visits followed by a retargeting touch
START = datetime(2026, 9, 1, tzinfo=UTC)
DAYS = 30


@dataclass(frozen=True)
class Journeys:
    touches: pd.DataFrame  # customer_id, touched_at, channel, campaign, cost
    conversions: pd.DataFrame  # customer_id, converted_at, value
    truth: dict[str, float]  # each paid channel's share of the conversions touches caused
    caused: dict[str, int]  # each paid channel's caused conversions (count)


def _visits(
    rng: np.random.Generator, intent: np.ndarray, organic: np.ndarray, organic_at: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(customer row, hour) of every site visit: one before each organic conversion, and
    browsing."""
    buyers = np.flatnonzero(organic)
    before = organic_at[buyers] - rng.exponential(VISIT_LEAD_H, buyers.size)
    browsers = np.repeat(np.arange(intent.size), rng.poisson(BROWSE_PER_INTENT * intent))
    browsed = rng.uniform(0, DAYS * 24, browsers.size)
    return np.concatenate([buyers, browsers]), np.concatenate([before, browsed])


def _touch_rows(
    rng: np.random.Generator, intent: np.ndarray, organic: np.ndarray, organic_at: np.ndarray
) -> pd.DataFrame:
    """row, hours, channel of every touch and visit, in time order (none before the start)."""
    n = intent.size
    parts: list[pd.DataFrame] = []
    for channel, rate in _RATES.items():
        who = np.repeat(np.arange(n), rng.poisson(rate, n))
        hours = rng.uniform(0, DAYS * 24, who.size)
        parts.append(pd.DataFrame({"row": who, "hours": hours, "channel": channel}))
    visitor, visited = _visits(rng, intent, organic, organic_at)
    parts.append(pd.DataFrame({"row": visitor, "hours": visited, "channel": VISIT}))
    chased = rng.random(visitor.size) < RETARGETED
    lag = rng.uniform(0.25, 2.0, int(chased.sum()))
    parts.append(
        pd.DataFrame(
            {"row": visitor[chased], "hours": visited[chased] + lag, "channel": "retargeting"}
        )
    )
    touches = pd.concat(parts, ignore_index=True)
    touches = touches[touches["hours"] >= 0]
    return touches.sort_values(["row", "hours"], kind="stable").reset_index(drop=True)


def _stamps(hours: np.ndarray) -> pd.DatetimeIndex:
    """Hours from the start as times to the second, as logs keep them."""
    return (pd.Timestamp(START) + pd.to_timedelta(hours, unit="h")).floor("s")


def simulate_journeys(n: int, seed: int = 0, visits_logged: bool = True) -> Journeys:
    rng = np.random.default_rng(seed)
    intent = rng.beta(1.0, 4.0, n)
    organic = rng.random(n) < 0.02 + 0.5 * intent
    organic_at = rng.uniform(0, DAYS * 24, n)  # hours from START
    touches = _touch_rows(rng, intent, organic, organic_at)
    effect = touches["channel"].map(EFFECTS).fillna(0.0).to_numpy()
    fired = rng.random(len(touches)) < effect
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
    if not visits_logged:
        touches = touches[touches["channel"] != VISIT]
    ids = np.array([f"J{i}" for i in range(n)])
    paid = touches["channel"] != VISIT
    touch_frame = pd.DataFrame(
        {
            "customer_id": ids[touches["row"].to_numpy()],
            "touched_at": _stamps(touches["hours"].to_numpy()),
            "channel": touches["channel"].to_numpy(),
            "campaign": np.where(paid, touches["channel"] + "-autumn", ""),
            "cost": touches["channel"].map(_COSTS).fillna(0.0).to_numpy(),
        }
    ).reset_index(drop=True)
    buyers = np.flatnonzero(converted)
    conversions = pd.DataFrame(
        {
            "customer_id": ids[buyers],
            "converted_at": _stamps(converted_at[buyers]),
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
