"""Deciding a batch of fresh triggers: scores from the model, consent and contact history, the
pacing price and the capacity left, handed to ``policies.decide_stream``. Also moves the pacing
price after each batch, on the wall clock of the budget period."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
from numpy.typing import NDArray

from policies.decide import Decisions, PolicyConfig, Scores, decide_stream
from policies.pacing import Pacer, PacingConfig
from policies.rules import ContactState
from stream_app.contacts import ContactLog
from stream_app.engine.intake import ValidEvents
from stream_app.ledger import BudgetLedger, LedgerState
from stream_app.metrics import EngineMetrics, counting_errors, timed

__all__ = ["ContactSource", "Decider", "ScoreSource"]

ScoreSource = Callable[[Sequence[str], Sequence[str]], Scores]
ContactSource = Callable[[Sequence[str]], ContactState]


class Decider:
    def __init__(
        self,
        *,
        policy: PolicyConfig,
        scores: ScoreSource,
        contacts: ContactSource,
        ledger: BudgetLedger,
        pacing: PacingConfig,
        pacer: Pacer,
        pacing_start_s: float | None = None,
        contact_log: ContactLog | None = None,
        metrics: EngineMetrics | None = None,
    ) -> None:
        """``pacing_start_s``: when the budget period began (epoch seconds; None: now).
        ``contact_log``: the persisted contact history (none: never contacted)."""
        self.policy = policy
        self._scores = scores
        self._contacts = contacts
        self.ledger = ledger
        self.pacing = pacing
        self.pacer = pacer
        self._origin = time.time() if pacing_start_s is None else pacing_start_s
        self._contact_log = contact_log
        self._metrics = metrics
        self.capacity = policy.catalog.capacities()

    def decide(self, fresh: ValidEvents, ledger: LedgerState) -> Decisions:
        """``ledger``: the period's spend and counts as the batch began (the reservations then
        enforce the budget and capacities atomically, whatever was spent since)."""
        customers = [e.customer_id for _, e in fresh]
        allowance = self.pacer.allowance(self.pacing, ledger.spent, self.elapsed())
        with (
            timed(self._metrics, "score"),
            counting_errors(self._metrics, "feature_store_or_model"),
        ):
            scores = self._scores(customers, [e.event_id for _, e in fresh])
        with timed(self._metrics, "policy"):
            return decide_stream(
                scores,
                self._contact_state(fresh),
                self.policy,
                self.pacer,
                allowance,
                self.capacity_left(ledger),
            )

    def _contact_state(self, fresh: ValidEvents) -> ContactState:
        """Consent from the features; contact history (as of each trigger) from the log."""
        customers = [e.customer_id for _, e in fresh]
        state = self._contacts(customers)
        if self._contact_log is None:
            return state
        return self._contact_log.apply(
            state, customers, [e.occurred_at.timestamp() for _, e in fresh]
        )

    def capacity_left(self, ledger: LedgerState) -> NDArray[np.float64]:
        """Capacity per action minus what the ledger counted this period (every worker's)."""
        return ledger.capacity_left(self.policy.catalog.names, self.capacity)

    def elapsed(self) -> float:
        """Seconds into the budget period, on the wall clock (the period may have begun before
        this worker did: NBA_PACING_START)."""
        return time.time() - self._origin

    def reprice(self) -> LedgerState:
        """Move the pacing price after a batch; returns the ledger's state it read."""
        ledger = self.ledger.state()
        self.pacer = self.pacer.updated(self.pacing, ledger.spent, self.elapsed(), step_s=1.0)
        return ledger
