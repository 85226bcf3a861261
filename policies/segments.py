"""Segments: churn risk x customer value x engagement, named as a CRM team names them.

| segment             | risk  | value | engagement |
|---------------------|-------|-------|------------|
| Critical Save       | high  | high  | any        |
| Automated Retention | high  | low   | any        |
| Upsell Opportunity  | low   | high  | high       |
| Re-engage           | low   | any   | low        |
| Monitor Only        | low   | low   | high       |
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SEGMENTS", "SegmentThresholds", "assign_segments"]

SEGMENTS = (
    "Critical Save",
    "Automated Retention",
    "Upsell Opportunity",
    "Re-engage",
    "Monitor Only",
)
Probability = Annotated[float, Field(ge=0.0, le=1.0)]


class SegmentThresholds(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    high_risk: Probability = 0.30  # p_churn at or above this is high risk
    high_value: Annotated[float, Field(ge=0.0)] = 10_000.0  # customer value ($) at or above
    low_engagement: Probability = 0.30  # engagement score (0..1) below this is low


def assign_segments(
    p_churn: NDArray[np.float64],
    customer_value: NDArray[np.float64],
    engagement: NDArray[np.float64],
    thresholds: SegmentThresholds,
) -> NDArray[np.int8]:
    """Index into SEGMENTS for each customer."""
    high_risk = p_churn >= thresholds.high_risk
    high_value = customer_value >= thresholds.high_value
    low_engagement = engagement < thresholds.low_engagement
    codes = np.select(
        [high_risk & high_value, high_risk, high_value & ~low_engagement, low_engagement],
        [0, 1, 2, 3],
        default=4,
    )
    return codes.astype(np.int8)
