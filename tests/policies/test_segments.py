"""The product brief's segments as the default, and thresholds that cannot contradict."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from policies.segments import SEGMENTS, SegmentThresholds, assign_segments


def test_the_briefs_segments_are_the_default() -> None:
    p_churn = np.array([0.70, 0.70, 0.30, 0.10, 0.10, 0.10, 0.59])
    value = np.array([60_000, 10_000, 60_000, 60_000, 1_000, 1_000, 60_000], dtype=float)
    engagement = np.array([0.9, 0.9, 0.9, 0.1, 0.5, 0.1, 0.1])
    names = [SEGMENTS[c] for c in assign_segments(p_churn, value, engagement, SegmentThresholds())]
    assert names == [
        "Critical Save",  # churn > 60% and value > $50k
        "Automated Retention",  # at risk, not worth a personal save
        "Automated Retention",  # churn between 20% and 60%
        "Monitor Only",  # high value, low engagement
        "Upsell Opportunity",  # churn < 20%, engaged
        "Re-engage",  # low risk, low value, disengaged
        "Automated Retention",  # 59% is below the Critical Save line
    ]


def test_low_risk_above_high_risk_is_refused() -> None:
    with pytest.raises(ValidationError, match="low_risk 0.7 is above high_risk 0.6"):
        SegmentThresholds(low_risk=0.7)
