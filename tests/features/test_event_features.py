"""The batch executor of declared event features: windows in event time, point in time, and a
re-sent event counted once."""

from __future__ import annotations

from datetime import UTC, datetime

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.event_features import StoredEvent, customer_event_features, event_features
from ingest.project import EventFeature


def _t(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


EVENTS = pd.DataFrame(
    {
        "event_id": ["e1", "e2", "e2", "e3", "e4", "e5", "e6"],
        "customer_id": ["a", "a", "a", "a", "a", "b", "a"],
        "event_type": ["login", "login", "login", "ticket", "ticket", "login", "login"],
        "occurred_at": [
            _t("2024-03-01 09:00"),
            _t("2024-03-01 11:00"),
            _t("2024-03-01 11:00"),  # e2 re-sent: the same event
            _t("2024-02-20 10:00"),
            _t("2024-03-01 11:30"),
            _t("2024-03-01 10:00"),
            _t("2024-03-01 12:00"),  # exactly at the asked time: not yet known
        ],
        "minutes": [5.0, 7.0, 7.0, None, None, 1.0, 9.0],
        "topic": [None, None, None, "billing", "login", None, None],
    }
)
DECLARED = (
    EventFeature(name="logins_24h", event_type="login", aggregate="count", window="24h"),
    EventFeature(name="logins_2h", event_type="login", aggregate="count", window="2h"),
    EventFeature(
        name="minutes_24h", event_type="login", aggregate="sum", window="24h", property="minutes"
    ),
    EventFeature(
        name="topics_30d", event_type="ticket", aggregate="distinct", window="30d", property="topic"
    ),
    EventFeature(name="hours_since_ticket", event_type="ticket", aggregate="recency", window="7d"),
)


def test_windows_are_trailing_in_event_time_and_a_resent_event_counts_once() -> None:
    asked = pd.DataFrame(
        {"customer_id": ["a", "b", "c"], "at": [_t("2024-03-01 12:00")] * 3}, index=[10, 11, 12]
    )
    got = event_features(EVENTS, asked, DECLARED)
    assert got.index.tolist() == [10, 11, 12]
    assert got.loc[10].to_dict() == {
        "logins_24h": 2.0,  # e1, e2 (once); e6 is at the asked time
        "logins_2h": 1.0,  # e2 only
        "minutes_24h": 12.0,
        "topics_30d": 2.0,  # billing, login
        "hours_since_ticket": pytest.approx(0.5),  # e4 at 11:30; e3 is older than 7 d
    }
    assert got.loc[11, "logins_24h"] == 1.0 and got.loc[11, "topics_30d"] == 0.0
    assert got.loc[12].to_dict() == {
        "logins_24h": 0.0,
        "logins_2h": 0.0,
        "minutes_24h": 0.0,
        "topics_30d": 0.0,
        "hours_since_ticket": 168.0,  # none in the window: the window's length
    }


def test_each_row_is_computed_at_its_own_time() -> None:
    asked = pd.DataFrame(
        {"customer_id": ["a", "a"], "at": [_t("2024-03-01 10:00"), _t("2024-03-02 10:00")]}
    )
    got = event_features(EVENTS, asked, DECLARED[:1])
    assert got["logins_24h"].tolist() == [1.0, 2.0]  # at 10:00 only e1; a day later e2 and e6


AT_US = 1_709_294_400_000_000  # 2024-03-01 12:00 UTC in microseconds since the epoch
HOUR_US = 3_600_000_000

stored_events = st.lists(
    st.builds(
        StoredEvent,
        event_id=st.sampled_from([f"e{k}" for k in range(12)]),  # some ids recur: re-sent
        event_type=st.sampled_from(["login", "ticket"]),
        # on and around the windows' edges (2 h, 24 h, 7 d, 30 d before AT_US) and at AT_US
        us=st.sampled_from([0, 1, 2, 24, 168, 720, 721]).flatmap(
            lambda hours: st.integers(-2, 2).map(lambda d: AT_US - hours * HOUR_US + d)
        ),
        properties=st.fixed_dictionaries(
            {},
            optional={
                "minutes": st.one_of(st.none(), st.floats(0, 1e4), st.just(float("nan"))),
                "topic": st.one_of(st.none(), st.sampled_from(["billing", "login", "api"])),
            },
        ),
    ),
    max_size=25,
)


@settings(max_examples=200, deadline=None)
@given(stored_events)
def test_the_streams_executor_computes_what_the_batch_executor_does(
    events: list[StoredEvent],
) -> None:
    stream = customer_event_features(events, AT_US, DECLARED)
    table = pd.DataFrame(
        {
            "event_id": [e.event_id for e in events],
            "customer_id": "a",
            "event_type": [e.event_type for e in events],
            "occurred_at": pd.to_datetime([e.us for e in events], unit="us", utc=True),
            "minutes": [e.properties.get("minutes") for e in events],
            "topic": [e.properties.get("topic") for e in events],
        }
    )
    at = datetime.fromtimestamp(AT_US / 1e6, UTC)
    batch = event_features(table, pd.DataFrame({"customer_id": ["a"], "at": [at]}), DECLARED)
    names = [f.name for f in DECLARED]
    np.testing.assert_allclose([stream[n] for n in names], batch.iloc[0][names], atol=1e-9)
