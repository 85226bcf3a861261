"""Segments: churn risk x customer value x engagement, named as the product brief names them.

The brief's segments are the default (thresholds in the project file's `segments`):

| segment             | rule (first that applies)                                  |
|---------------------|------------------------------------------------------------|
| Critical Save       | p_churn >= high_risk (0.60) and value >= high_value ($50k) |
| Automated Retention | p_churn >= low_risk (0.20)                                 |
| Monitor Only        | value >= high_value and engagement < low_engagement (0.30) |
| Upsell Opportunity  | engagement >= low_engagement (low risk)                    |
| Re-engage           | the rest: low risk, low value, low engagement              |

The brief names the first four; Re-engage takes the low-risk, low-value, disengaged customers it
leaves out. The simulated world overrides the thresholds (simulator/project.py says why).
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

__all__ = ["SEGMENTS", "SegmentThresholds", "assign_segments"]

SEGMENTS = (
    "Critical Save",
    "Automated Retention",
    "Upsell Opportunity",
    "Re-engage",
    "Monitor Only",
)  # the order is the codes' (reports and reason codes name them)
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class SegmentThresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    high_risk: Probability = 0.60  # p_churn at or above this, with a high value: Critical Save
    low_risk: Probability = 0.20  # p_churn at or above this: at risk (Automated Retention)
    high_value: Annotated[float, Field(ge=0.0)] = 50_000.0  # customer value ($) at or above
    low_engagement: Probability = 0.30  # engagement score (0..1) below this is low

    @model_validator(mode="after")
    def _ordered(self) -> SegmentThresholds:
        if self.low_risk > self.high_risk:
            raise ValueError(f"low_risk {self.low_risk} is above high_risk {self.high_risk}")
        return self


def assign_segments(
    p_churn: NDArray[np.float64],
    customer_value: NDArray[np.float64],
    engagement: NDArray[np.float64],
    thresholds: SegmentThresholds,
) -> NDArray[np.int8]:
    """Index into SEGMENTS for each customer (the first rule of the table that applies)."""
    high_value = customer_value >= thresholds.high_value
    low_engagement = engagement < thresholds.low_engagement
    codes = np.select(
        [
            (p_churn >= thresholds.high_risk) & high_value,
            p_churn >= thresholds.low_risk,
            high_value & low_engagement,
            ~low_engagement,
        ],
        [0, 1, 4, 2],
        default=3,
    )
    return codes.astype(np.int8)
