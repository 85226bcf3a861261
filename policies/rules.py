"""Eligibility and contact rules, and the reason code of the rule that blocked an action.

Rules, checked in this order (the first that blocks names the reason):
do-not-disturb, consent for the action's channel, minimum customer value, allowed segments,
cooldown since the last contact on that channel, and the maximum number of contacts in a
rolling window. ``do_nothing`` is never blocked.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Annotated

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from policies.catalog import CHANNELS, Catalog
from policies.errors import SchemaError
from policies.segments import SEGMENTS

__all__ = ["Block", "ContactRules", "ContactState", "eligibility"]


class Block(IntEnum):
    """Why an action was not eligible; ``NONE`` when it was."""

    NONE = 0
    DO_NOT_DISTURB = 1
    NO_CONSENT = 2
    BELOW_MIN_VALUE = 3
    SEGMENT_EXCLUDED = 4
    COOLDOWN = 5
    CONTACT_LIMIT = 6

    @property
    def code(self) -> str:
        return self.name.lower()


class ContactRules(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    cooldown_days: dict[str, Annotated[float, Field(ge=0.0)]] = Field(
        default_factory=lambda: {"phone": 30.0, "email": 7.0, "in_app": 3.0}
    )
    max_contacts: Annotated[int, Field(ge=0)] = 3
    window_days: Annotated[float, Field(gt=0.0)] = 30.0

    @model_validator(mode="after")
    def _known_channels(self) -> ContactRules:
        unknown = set(self.cooldown_days) - set(CHANNELS)
        if unknown:
            raise ValueError(
                f"cooldown_days names unknown channels {sorted(unknown)}; use {CHANNELS}"
            )
        return self


@dataclass(frozen=True)
class ContactState:
    """What the engine knows of each customer's contact history, as arrays over customers.

    ``consent`` and ``days_since_contact`` are [customer, channel] in CHANNELS order;
    ``days_since_contact`` is inf for a channel never used.
    """

    consent: NDArray[np.bool_]
    days_since_contact: NDArray[np.float64]
    contacts_in_window: NDArray[np.int64]
    do_not_disturb: NDArray[np.bool_]

    @classmethod
    def fresh(cls, n: int, consent: NDArray[np.bool_] | None = None) -> ContactState:
        """Customers never contacted, with the given consent (all channels when None)."""
        return cls(
            consent=np.ones((n, len(CHANNELS)), dtype=bool) if consent is None else consent,
            days_since_contact=np.full((n, len(CHANNELS)), np.inf),
            contacts_in_window=np.zeros(n, dtype=np.int64),
            do_not_disturb=np.zeros(n, dtype=bool),
        )

    def subset(self, rows: NDArray[np.int64]) -> ContactState:
        return ContactState(
            consent=self.consent[rows],
            days_since_contact=self.days_since_contact[rows],
            contacts_in_window=self.contacts_in_window[rows],
            do_not_disturb=self.do_not_disturb[rows],
        )

    def validate(self, n: int) -> None:
        expected = (n, len(CHANNELS))
        if self.consent.shape != expected or self.days_since_contact.shape != expected:
            raise SchemaError(
                f"consent and days_since_contact must be {expected} (channels {CHANNELS})"
            )
        if self.contacts_in_window.shape != (n,) or self.do_not_disturb.shape != (n,):
            raise SchemaError(
                "contacts_in_window and do_not_disturb must have one entry per customer"
            )
        if np.any(np.isnan(self.days_since_contact)) or np.any(self.days_since_contact < 0):
            raise SchemaError("days_since_contact must be >= 0 (inf when never contacted)")


def eligibility(
    catalog: Catalog,
    rules: ContactRules,
    state: ContactState,
    segment: NDArray[np.int8],
    customer_value: NDArray[np.float64],
) -> tuple[NDArray[np.bool_], NDArray[np.int8]]:
    """(eligible [customer, action], blocking rule [customer, action] as Block codes)."""
    n = segment.shape[0]
    state.validate(n)
    blocked = np.zeros((n, len(catalog.names)), dtype=np.int8)
    limit_hit = state.contacts_in_window >= rules.max_contacts
    for j, action in enumerate(catalog.actions, start=1):
        channel = CHANNELS.index(action.channel)
        rule = action.eligibility
        allowed_segments = (
            np.ones(n, dtype=bool)
            if rule.segments is None
            else np.isin(segment, [SEGMENTS.index(s) for s in rule.segments])
        )
        cooldown = rules.cooldown_days.get(action.channel, 0.0)
        checks = [
            (state.do_not_disturb, Block.DO_NOT_DISTURB),
            (~state.consent[:, channel] & rule.consent_required, Block.NO_CONSENT),
            (customer_value < rule.min_customer_value, Block.BELOW_MIN_VALUE),
            (~allowed_segments, Block.SEGMENT_EXCLUDED),
            (state.days_since_contact[:, channel] < cooldown, Block.COOLDOWN),
            (limit_hit, Block.CONTACT_LIMIT),
        ]
        for failing, reason in reversed(checks):  # reversed: the first rule in order wins
            blocked[failing, j] = reason
    return blocked == Block.NONE, blocked
