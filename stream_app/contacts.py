"""Each customer's contact history, kept in Redis so that every worker and every restart sees it.

One hash per events topic (``nba:contacts:<topic>``, like the trigger history): field =
customer id, value = JSON list of ``[channel, epoch s]`` of the contacts within the longest
horizon the rules look at (their window, or a channel's cooldown if longer); older ones are
dropped when a customer is contacted again. A customer's events go to one partition, so one
worker at a time writes that customer's field. Scoped by topic so that two engines on other
streams (a second `nba demo` replaying the same simulated event times, a test) never see each
other's contacts as cooldowns.

Time is event time (the trigger's ``occurred_at``), like the trigger interval: a replay of old
events sees the history as it was, not as of the wall clock.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np

from policies.catalog import CHANNELS
from policies.rules import ContactRules, ContactState
from stream_app.redis_clients import RedisClient

__all__ = ["ContactLog"]

_DAY_S = 86_400.0
_READ_PART = 20_000  # customers per HMGET of the history


class ContactLog:
    @classmethod
    def for_topic(cls, client: RedisClient, rules: ContactRules, events_topic: str) -> ContactLog:
        """The contact history of the engines reading ``events_topic``."""
        return cls(client, rules, key=f"nba:contacts:{events_topic}")

    def __init__(self, client: RedisClient, rules: ContactRules, key: str) -> None:
        self._client = client
        self._rules = rules
        self._key = key
        longest = max([rules.window_days, *rules.cooldown_days.values()])
        self._horizon_s = longest * _DAY_S
        # The contacts of a batch whose transaction is committing while the next batch is
        # decided (stream_app.decision_loop): that batch sees them before they are recorded.
        # Replaced, never mutated, so a reader's snapshot stays whole.
        self._held: dict[str, list[tuple[str, float]]] = {}

    def hold(self, contacts: Sequence[tuple[str, str, float]]) -> None:
        """(customer, channel, epoch s) contacts that count from now on, not yet recorded."""
        held: dict[str, list[tuple[str, float]]] = {}
        for customer, channel, at in contacts:
            held.setdefault(customer, []).append((channel, at))
        self._held = held

    def release(self) -> None:
        """The held contacts are recorded (``record``) or never happened (an aborted batch)."""
        self._held = {}

    def _history(self, customers: Sequence[str]) -> list[list[tuple[str, float]]]:
        """Each customer's recorded contacts and the held ones. The held ones are taken before
        Redis is read: a release after it comes after their record (``record``, then
        ``release``), so each contact is seen in one place or both (counted once), never in
        neither."""
        held = self._held
        recorded = self._recorded(customers)
        if not held:
            return recorded
        return [
            sorted({*history, *held.get(customer, [])}) if customer in held else history
            for customer, history in zip(customers, recorded, strict=True)
        ]

    def _recorded(self, customers: Sequence[str]) -> list[list[tuple[str, float]]]:
        if not customers:
            return []
        # In parts, one round trip: a base-wide read (a batch run) is no single million-field
        # HMGET that would hold Redis for the whole reply.
        with self._client.pipeline(transaction=False) as pipe:
            for start in range(0, len(customers), _READ_PART):
                pipe.hmget(self._key, list(customers[start : start + _READ_PART]))
            raw = [value for part in pipe.execute() for value in part]
        return [[(c, float(t)) for c, t in json.loads(r)] if r else [] for r in raw]

    def apply(
        self, state: ContactState, customers: Sequence[str], now_s: Sequence[float]
    ) -> ContactState:
        """``state`` (consent, do-not-disturb) with the days since each channel's last contact
        and the contacts within the rules' window, as of each customer's ``now_s``."""
        days = np.full((len(customers), len(CHANNELS)), np.inf)
        in_window = np.zeros(len(customers), dtype=np.int64)
        window_s = self._rules.window_days * _DAY_S
        for i, (history, now) in enumerate(zip(self._history(customers), now_s, strict=True)):
            for channel, at in history:
                age = max(now - at, 0.0)
                j = CHANNELS.index(channel)
                days[i, j] = min(days[i, j], age / _DAY_S)
                in_window[i] += age <= window_s
        return ContactState(
            consent=state.consent,
            days_since_contact=days,
            contacts_in_window=in_window,
            do_not_disturb=state.do_not_disturb,
        )

    def record(self, contacts: Sequence[tuple[str, str, float]]) -> None:
        """Add (customer, channel, epoch s) contacts (again: no change), dropping those past the
        horizon."""
        if not contacts:
            return
        customers = sorted({c for c, _, _ in contacts})
        merged = dict(zip(customers, self._recorded(customers), strict=True))
        for customer, channel, at in contacts:
            merged[customer].append((channel, at))
        mapping = {}
        for customer, history in merged.items():
            latest = max(t for _, t in history)
            # A replayed batch records its contacts again: the same (channel, time) is one contact.
            kept = [[c, t] for c, t in sorted(set(history)) if latest - t <= self._horizon_s]
            mapping[customer] = json.dumps(kept, separators=(",", ":"))
        self._client.hset(self._key, mapping=mapping)
