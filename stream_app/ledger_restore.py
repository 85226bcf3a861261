"""Rebuilding a lost ledger from `nba-actions`, the durable record of every decision.

Read with ``isolation.level=read_committed`` from the start of the topic to its end as it is
now: every action of the ledger's budget period (the first content per action_id) becomes a
reservation again, spend and per-action counts are summed from them, and each decision is
stored again by action_id, marked delivered (a committed transaction carried it), so that a
replayed or re-sent trigger publishes nothing instead of deciding anew.
Runs at a worker's start when the period's ledger has no epoch (new or lost: the topic tells),
and when a reservation finds the epoch gone. What else a flushed Redis held is not rebuilt
here: the contact history (cooldowns restart), the last trigger per customer, and the Feast
online features (run `nba features materialize` again).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass

from pydantic import ValidationError

from stream_app import kafka_clients
from stream_app.engine.state import DecisionState
from stream_app.ledger import BudgetLedger
from stream_app.messages import NbaAction
from stream_app.settings import Settings
from stream_app.topic_scan import read_from_start

__all__ = ["Restored", "restore_ledger"]

_LOG = logging.getLogger("nba.worker.ledger")


@dataclass(frozen=True)
class Restored:
    rebuilt: bool  # False: another worker had rebuilt it first; this one adopted its epoch
    actions: int  # distinct action_ids of the period found on the topic
    spent: float
    seconds: float


def restore_ledger(settings: Settings, ledger: BudgetLedger, state: DecisionState) -> Restored:
    started = time.monotonic()
    consumer = kafka_clients.consumer(
        settings,
        f"{settings.consumer_group}-ledger-{uuid.uuid4().hex[:8]}",
        **{"isolation.level": "read_committed"},
    )
    try:
        values = read_from_start(consumer, settings.topic_actions)
    finally:
        consumer.close()
    period = _period_actions(values, ledger.period)
    rebuilt = ledger.rebuild(
        (a.action_id, a.action, a.cost) for a, _ in period.values() if a.action != "do_nothing"
    )
    for action_id, (_, payload) in period.items():
        state.store_decision(action_id, payload)
    state.mark_delivered(list(period))
    restored = Restored(rebuilt, len(period), ledger.spent(), time.monotonic() - started)
    _LOG.warning(
        "ledger of period %s %s from %s: %d actions, spend %.2f (%.1f s)",
        ledger.period,
        "rebuilt" if rebuilt else "adopted (another worker rebuilt it)",
        settings.topic_actions,
        restored.actions,
        restored.spent,
        restored.seconds,
    )
    return restored


def _period_actions(values: list[bytes], period: str) -> dict[str, tuple[NbaAction, bytes]]:
    """The first content of each action_id of ``period`` (a message that does not parse is
    skipped: the engine never published one)."""
    found: dict[str, tuple[NbaAction, bytes]] = {}
    for value in values:
        try:
            action = NbaAction.model_validate_json(value)
        except ValidationError:
            continue
        if action.budget_period == period and action.action_id not in found:
            found[action.action_id] = (action, value)
    return found
