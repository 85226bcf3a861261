"""Score and contact lookups by customer id, backed by the simulated world: what the engine's
feature store and model would answer, until they serve real predictions."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
from numpy.typing import NDArray

from policies.decide import Scores
from policies.rules import ContactState
from simulator.world import World

__all__ = ["WorldScoreSource"]


class WorldScoreSource:
    def __init__(self, world: World, scores: Scores, contacts: ContactState) -> None:
        self.world = world
        self._scores = scores
        self._contacts = contacts
        self.index = {cid: i for i, cid in enumerate(scores.customer_ids)}

    def rows(self, customers: Sequence[str]) -> NDArray[np.int64]:
        return np.array([self.index[c] for c in customers], dtype=np.int64)

    def scores(self, customers: Sequence[str], event_ids: Sequence[str]) -> Scores:
        """Scores of these customers, keyed for exploration by the triggering event ids."""
        return replace(self._scores.subset(self.rows(customers)), decision_keys=list(event_ids))

    def contacts(self, customers: Sequence[str]) -> ContactState:
        return self._contacts.subset(self.rows(customers))
