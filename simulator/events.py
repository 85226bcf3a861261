"""Engagement events and outcome events from the simulated world.

Sessions start at a customer's own rate (engagement), each with a login and a burst of
feature_used / page_view events seconds apart; rare events (support tickets, billing failures,
NPS answers, seat changes, exports, admin changes) follow the latent state. Customers who would
churn disengage over the window (their session rate decays), so the stream drifts with the
latent state as a real product's does.

Events are generated as column arrays (fast, vectorized) and serialized to the
`engagement-events` JSON contract only when written or sent.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from policies.errors import ConfigError
from simulator.world import AS_OF, World, rng_for

__all__ = [
    "EVENT_TYPES",
    "EventBatch",
    "days_holding",
    "generate_events",
    "outcome_events",
]

EVENT_TYPES = (
    "login",
    "feature_used",
    "page_view",
    "support_ticket",
    "billing_failed",
    "nps_response",
    "seat_added",
    "seat_removed",
    "export_data",
    "admin_settings_changed",
)
FEATURES = (
    "dashboards",
    "reports",
    "alerts",
    "integrations",
    "api",
    "sso",
    "workflows",
    "audit_log",
    "forecasting",
    "sharing",
    "mobile_app",
    "ai_assistant",
)
PAGES = ("pricing", "dashboard", "docs", "billing", "settings")
SETTINGS = ("sso", "roles", "billing_contact", "data_retention", "notifications")
_T = {name: code for code, name in enumerate(EVENT_TYPES)}
_DAY_S = 86_400.0
_SESSION_GAP_S = 30.0
_CHUNK = 10_000


@dataclass(frozen=True)
class EventBatch:
    """Events as columns, in time order. ``detail`` is the type's one property (see _PROPERTY)."""

    customer_index: NDArray[np.int64]
    event_type: NDArray[np.int8]
    occurred_s: NDArray[np.float64]  # seconds since ``start``
    detail: NDArray[np.int64]
    start: datetime
    customer_ids: NDArray[np.str_]
    seed: int

    def __len__(self) -> int:
        return int(self.customer_index.size)

    def json_lines(
        self, start_at: int = 0, stop_at: int | None = None
    ) -> Iterator[tuple[str, bytes]]:
        """(customer_id, JSON bytes) per event, in the `engagement-events` contract.

        Built from pre-rendered parts (timestamps vectorized per chunk, one cached JSON text per
        (type, property) pair) rather than json.dumps per event, because replay must outrun the
        engine (benchmarks/simulator_speed.py measures both). Every part is generated here or a
        fixed identifier, so no escaping is needed.
        """
        stop = len(self) if stop_at is None else min(stop_at, len(self))
        origin = np.datetime64(self.start.replace(tzinfo=None), "ms")
        properties: dict[tuple[int, int], str] = {}
        for chunk in range(start_at, stop, _CHUNK):
            upto = min(chunk + _CHUNK, stop)
            offsets = (self.occurred_s[chunk:upto] * 1000).astype("timedelta64[ms]")
            stamps = np.datetime_as_string(origin + offsets, unit="ms").tolist()
            customers = self.customer_ids[self.customer_index[chunk:upto]].tolist()
            kinds = self.event_type[chunk:upto].tolist()
            details = self.detail[chunk:upto].tolist()
            for k, (customer, kind, detail, stamp) in enumerate(
                zip(customers, kinds, details, stamps, strict=True), start=chunk
            ):
                props = properties.get((kind, detail))
                if props is None:
                    props = json.dumps(
                        _properties(EVENT_TYPES[kind], detail), separators=(",", ":")
                    )
                    properties[(kind, detail)] = props
                line = (
                    f'{{"event_id":"ev-{self.seed}-{k}","customer_id":"{customer}",'
                    f'"event_type":"{EVENT_TYPES[kind]}","occurred_at":"{stamp}Z",'
                    f'"properties":{props}}}'
                )
                yield customer, line.encode()

    def to_frame(self) -> pd.DataFrame:
        return pd.DataFrame(
            {
                "customer_id": self.customer_ids[self.customer_index],
                "event_type": np.asarray(EVENT_TYPES)[self.event_type],
                "occurred_at": pd.Timestamp(self.start)
                + pd.to_timedelta(self.occurred_s, unit="s"),
                "detail": self.detail,
            }
        )


def _properties(kind: str, detail: int) -> dict[str, object]:
    if kind == "feature_used":
        return {"feature": FEATURES[detail]}
    if kind == "page_view":
        return {"page": PAGES[detail]}
    if kind == "support_ticket":
        return {"severity": detail}
    if kind == "nps_response":
        return {"score": detail}
    if kind in ("seat_added", "seat_removed"):
        return {"count": detail}
    if kind == "admin_settings_changed":
        return {"setting": SETTINGS[detail]}
    if kind == "billing_failed":
        return {"attempt": detail}
    if kind == "export_data":
        return {"rows": detail}
    return {"device": "mobile" if detail else "web"}


class _Builder:
    """Accumulates event columns from several vectorized draws."""

    def __init__(self) -> None:
        self.parts: list[
            tuple[NDArray[np.int64], int | NDArray[np.int8], NDArray[np.float64], NDArray[np.int64]]
        ] = []

    def add(
        self,
        who: NDArray[np.int64],
        kind: int | NDArray[np.int8],
        at: NDArray[np.float64],
        detail: NDArray[np.int64],
    ) -> None:
        self.parts.append((who, kind, at, detail))

    def build(self, start: datetime, world: World, seed: int) -> EventBatch:
        who = np.concatenate([p[0] for p in self.parts])
        kinds = np.concatenate(
            [np.broadcast_to(np.asarray(p[1], dtype=np.int8), p[0].shape) for p in self.parts]
        )
        at = np.concatenate([p[2] for p in self.parts])
        detail = np.concatenate([p[3] for p in self.parts])
        order = np.argsort(at, kind="stable")
        return EventBatch(
            customer_index=who[order],
            event_type=kinds[order],
            occurred_s=at[order],
            detail=detail[order],
            start=start,
            customer_ids=world.customers["customer_id"].to_numpy(dtype=str),
            seed=seed,
        )


def days_holding(world: World, events: int) -> float:
    """A window long enough to hold about ``events`` events (4 events per session, 20% spare)."""
    per_day = max(1.0, world.n * world.config.sessions_per_day * 4.0)
    return max(0.01, 1.2 * events / per_day)


def generate_events(
    world: World, days: float = 1.0, start: datetime = AS_OF, seed: int | None = None
) -> EventBatch:
    """All engagement events of the base over ``days`` from ``start``, in time order."""
    if not days > 0:
        raise ConfigError(f"days must be > 0, got {days}")
    seed = world.config.seed if seed is None else seed
    rng = rng_for(seed, "events")
    lat, n, window = world.latent, world.n, days * _DAY_S
    would_churn = ~world.retained[:, 0]
    builder = _Builder()

    rate = world.config.sessions_per_day * days * np.exp(0.7 * lat["engagement"])
    sessions = rng.poisson(rate)
    owner = np.repeat(np.arange(n), sessions)
    begin = rng.random(owner.size) * window
    # Disengagement before churn: later sessions of would-be churners are thinned out.
    keep = ~would_churn[owner] | (rng.random(owner.size) > 0.6 * begin / window)
    owner, begin = owner[keep], begin[keep]
    builder.add(owner, _T["login"], begin, (rng.random(owner.size) < 0.3).astype(np.int64))
    _session_burst(
        builder,
        rng,
        owner,
        begin,
        np.exp(-0.6 * lat["low_adoption"][owner]) * 2.0,
        _T["feature_used"],
        len(FEATURES),
    )
    pricing_pull = np.exp(0.6 * lat["growth_intent"][owner] + 0.6 * lat["price_sensitivity"][owner])
    _page_views(builder, rng, owner, begin, pricing_pull)

    per_day = {
        "support_ticket": 0.02 * np.exp(-0.7 * lat["satisfaction"]),
        "billing_failed": 0.05 * lat["billing_issue"] + 0.0005,
        "nps_response": np.full(n, 0.003),
        "seat_added": 0.004 * np.exp(0.8 * lat["growth_intent"]),
        "seat_removed": 0.003 * np.exp(-0.6 * lat["satisfaction"] - 0.4 * lat["engagement"]),
        "export_data": 0.006 * np.exp(0.5 * lat["risk"]),
        "admin_settings_changed": 0.01 * np.exp(0.3 * lat["engagement"]),
    }
    for kind, daily in per_day.items():
        count = rng.poisson(daily * days)
        who = np.repeat(np.arange(n), count)
        builder.add(who, _T[kind], rng.random(who.size) * window, _rare_detail(kind, who, lat, rng))
    return builder.build(start, world, seed)


def _session_burst(
    builder: _Builder,
    rng: np.random.Generator,
    owner: NDArray[np.int64],
    begin: NDArray[np.float64],
    mean: NDArray[np.float64],
    kind: int,
    n_values: int,
) -> None:
    count = rng.poisson(mean)
    who = np.repeat(owner, count)
    at = np.repeat(begin, count) + rng.exponential(_SESSION_GAP_S, who.size) * (
        1 + rng.poisson(2, who.size)
    )
    builder.add(who, kind, at, rng.integers(0, n_values, who.size))


def _page_views(
    builder: _Builder,
    rng: np.random.Generator,
    owner: NDArray[np.int64],
    begin: NDArray[np.float64],
    pricing_pull: NDArray[np.float64],
) -> None:
    count = rng.poisson(1.0, owner.size)
    who, pull = np.repeat(owner, count), np.repeat(pricing_pull, count)
    at = np.repeat(begin, count) + rng.exponential(_SESSION_GAP_S, who.size)
    pricing = rng.random(who.size) < np.minimum(0.9, 0.08 * pull)
    page = np.where(pricing, 0, rng.integers(1, len(PAGES), who.size))
    builder.add(who, _T["page_view"], at, page.astype(np.int64))


def _rare_detail(
    kind: str, who: NDArray[np.int64], lat: dict[str, NDArray[np.float64]], rng: np.random.Generator
) -> NDArray[np.int64]:
    size = who.size
    if kind == "support_ticket":
        return np.clip(
            np.round(2.2 - 0.8 * lat["satisfaction"][who] + rng.normal(0, 0.7, size)), 1, 4
        ).astype(np.int64)
    if kind == "nps_response":
        return np.clip(
            np.round(7 + 1.8 * lat["satisfaction"][who] + rng.normal(0, 1.2, size)), 0, 10
        ).astype(np.int64)
    if kind in ("seat_added", "seat_removed"):
        return 1 + rng.poisson(1.0, size)
    if kind == "export_data":
        return rng.integers(100, 100_000, size)
    if kind == "admin_settings_changed":
        return rng.integers(0, len(SETTINGS), size)
    return 1 + rng.poisson(0.5, size)


def outcome_events(
    world: World,
    customer_index: NDArray[np.int64],
    action_index: NDArray[np.int64],
    action_ids: list[str | None] | None = None,
    as_of: datetime | None = None,
) -> list[dict[str, object]]:
    """The `outcomes` messages for customers who got these actions, at their renewal date.

    Renewal: ``renewed`` or ``churned`` with the contract value; expansion: ``upgraded`` with
    the expansion revenue (only when it happened). Values are the world's potential outcomes.
    ``as_of``: the moment the world's snapshot date (AS_OF) stands for, e.g. when a live engine
    decided; outcome dates move with it, so they fall after the decisions.
    """
    if customer_index.shape != action_index.shape:
        raise ConfigError("customer_index and action_index must have the same length")
    c = world.customers
    renewal = pd.DatetimeIndex(c["renewal_date"].to_numpy()[customer_index])
    if as_of is not None:
        renewal = renewal + (pd.Timestamp(as_of) - pd.Timestamp(AS_OF))
    renewed_at = renewal.strftime("%Y-%m-%dT%H:%M:%S+00:00")
    upgraded_at = (renewal + pd.Timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S+00:00")
    ids = c["customer_id"].to_numpy(dtype=str)
    messages: list[dict[str, object]] = []
    for k, (i, a) in enumerate(zip(customer_index.tolist(), action_index.tolist(), strict=True)):
        base = {"customer_id": str(ids[i]), "action_id": action_ids[k] if action_ids else None}
        messages.append(
            {
                **base,
                "outcome_type": "renewed" if world.retained[i, a] else "churned",
                "value": float(world.value[i]),
                "occurred_at": renewed_at[k],
            }
        )
        if world.expansion[i, a] > 0:
            messages.append(
                {
                    **base,
                    "outcome_type": "upgraded",
                    "value": float(world.expansion[i, a]),
                    "occurred_at": upgraded_at[k],
                }
            )
    return messages
