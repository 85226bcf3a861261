"""A small project of its own whose truth is known: a retention campaign on a B2B base where a
call saves a customer only after a burst of support tickets (`write_ticket_campaign`).

It exercises what the simulated world's fixed feature vector cannot: a project file with event
types, an event feature (support tickets in the 7 days before the decision) that drives both the
risk and the effect, an opt-out event and a do-not-disturb column. Files: customers.csv,
events.csv (tickets before the assignment), experiments.csv (randomized, propensities logged),
truth.csv (each customer's true retention probability per action) and nba.yaml.

Truth, per customer with ``k`` tickets in the 7 days before ``ASSIGNED``:
P(retained | no action) = sigmoid(2 - 0.6 k); a call adds 0.3 when k >= 3 and nothing otherwise;
an e-mail adds 0.03 (capped at 1).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from numpy.typing import NDArray

__all__ = ["ACTIONS", "ASSIGNED", "live_week", "true_retention", "write_ticket_campaign"]

ASSIGNED = datetime(2026, 1, 10, tzinfo=UTC)
ACTIONS = ("do_nothing", "account_manager_call", "retention_email")
_ARM_SHARES = (0.5, 0.25, 0.25)
_VALUE = 5_000.0  # the median contract value


def true_retention(tickets: NDArray[np.int64]) -> NDArray[np.float64]:
    """[customer, action] true probability of retention, in ACTIONS order."""
    base = 1 / (1 + np.exp(-(2.0 - 0.6 * tickets)))
    call = np.clip(base + 0.3 * (tickets >= 3), 0, 1)
    email = np.clip(base + 0.03, 0, 1)
    return np.column_stack([base, call, email])


def _project(with_event_features: bool) -> dict[str, object]:
    project: dict[str, object] = {
        "name": "ticket_saves",
        "sources": {t: {"path": f"{t}.csv"} for t in ("customers", "events", "experiments")},
        "features": [
            {"name": "seats", "kind": "numeric"},
            {"name": "plan", "kind": "categorical"},
        ],
        "events": {
            "types": ["support_ticket", "login", "unsubscribe"],
            "triggers": ["login"],
            "properties": {"severity": "numeric"},
        },
        "outcome": {"name": "retained", "kind": "binary", "window": "90d"},
        "value": {"source": "column", "column": "contract_value"},
        "consent": {"phone": "consent_phone", "email": "consent_email"},
        "opt_outs": {"unsubscribe": ["email"]},
        "do_not_disturb": "dnd",
        "catalog": {
            "actions": [
                {"name": "account_manager_call", "channel": "phone", "cost_fixed": 50.0},
                {"name": "retention_email", "channel": "email", "cost_fixed": 1.0},
            ]
        },
    }
    if with_event_features:
        project["event_features"] = [
            {
                "name": "tickets_7d",
                "event_type": "support_ticket",
                "aggregate": "count",
                "window": "7d",
            }
        ]
    return project


def write_ticket_campaign(
    folder: Path, n: int = 4_000, seed: int = 0, with_event_features: bool = True
) -> Path:
    """Write the campaign's files into ``folder``; returns the project file's path."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"S{i}" for i in range(n)])
    tickets = np.where(rng.random(n) < 0.3, rng.poisson(4.0, n), rng.poisson(0.3, n))
    pd.DataFrame(
        {
            "customer_id": ids,
            "seats": rng.integers(1, 50, n),
            "plan": rng.choice(["basic", "pro"], n),
            "contract_value": np.round(_VALUE * rng.lognormal(0.0, 0.5, n), 2),
            "consent_phone": rng.random(n) < 0.9,
            "consent_email": True,
            "dnd": np.arange(n) == 2,  # S2 asked not to be disturbed
        }
    ).to_csv(folder / "customers.csv", index=False)
    owner = np.repeat(np.arange(n), tickets)
    hours = rng.uniform(1, 160, owner.size)
    pd.DataFrame(
        {
            "event_id": [f"e{i}-{j}" for i, j in zip(owner, _ranks(owner), strict=True)],
            "customer_id": ids[owner],
            "event_type": "support_ticket",
            "occurred_at": [(ASSIGNED - timedelta(hours=float(h))).isoformat() for h in hours],
            "severity": 3,
        }
    ).to_csv(folder / "events.csv", index=False)
    arm = rng.choice(len(ACTIONS), n, p=_ARM_SHARES)
    truth = true_retention(tickets)
    pd.DataFrame(
        {
            "customer_id": ids,
            "action": np.asarray(ACTIONS)[arm],
            "assigned_at": ASSIGNED.isoformat(),
            "propensity": np.asarray(_ARM_SHARES)[arm],
            "retained": (rng.random(n) < truth[np.arange(n), arm]).astype(int),
        }
    ).to_csv(folder / "experiments.csv", index=False)
    pd.DataFrame(
        {"customer_id": ids, "tickets_7d": tickets}
        | {f"p_retain__{a}": truth[:, k] for k, a in enumerate(ACTIONS)}
    ).to_csv(folder / "truth.csv", index=False)
    path = folder / "nba.yaml"
    path.write_text(yaml.safe_dump(_project(with_event_features), sort_keys=False))
    return path


def _ranks(owner: NDArray[np.int64]) -> NDArray[np.int64]:
    """0, 1, 2... within each run of equal owners (``owner`` is sorted)."""
    starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
    counts = np.diff(np.r_[starts, owner.size])
    return np.arange(owner.size) - np.repeat(starts, counts)


def live_week(customers: list[str], end: datetime, seed: int = 0) -> pd.DataFrame:
    """A week of live events before ``end`` for ``customers`` (tickets and 1-3 logins each, the
    logins being the project's triggers), in time order: event_id, customer_id, event_type,
    occurred_at, severity (tickets only)."""
    rng = np.random.default_rng(seed)
    tickets = rng.poisson(2.0, len(customers))
    logins = rng.integers(1, 4, len(customers))
    owner = np.repeat(np.arange(len(customers)), tickets + logins)
    is_ticket = np.concatenate(
        [np.r_[np.ones(t, bool), np.zeros(g, bool)] for t, g in zip(tickets, logins, strict=True)]
    )
    seconds = rng.uniform(0, 7 * 86_400, owner.size)
    frame = pd.DataFrame(
        {
            "event_id": [f"live-{i}-{j}" for i, j in zip(owner, _ranks(owner), strict=True)],
            "customer_id": np.asarray(customers)[owner],
            "event_type": np.where(is_ticket, "support_ticket", "login"),
            # whole microseconds: what a message's ISO time carries
            "occurred_at": (pd.Timestamp(end) - pd.to_timedelta(seconds, unit="s")).floor("us"),
            "severity": pd.Series(np.where(is_ticket, 3, 0), dtype="Int64").where(is_ticket),
        }
    )
    return frame.sort_values("occurred_at", kind="stable").reset_index(drop=True)
