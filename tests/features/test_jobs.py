"""CLV, RFM and persona jobs on the simulator's history (no servers)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr

from features.jobs import clv_table, fit_personas, persona_inputs, rfm_table
from policies.errors import SchemaError
from simulator.config import WorldConfig
from simulator.datasets import transactions
from simulator.world import AS_OF, World, build_world


@pytest.fixture(scope="module")
def world() -> World:
    return build_world(WorldConfig(n_customers=6_000, seed=9))


@pytest.fixture(scope="module")
def history(world: World) -> pd.DataFrame:
    return transactions(world)


def test_clv_follows_the_value_the_world_pays(world: World, history: pd.DataFrame) -> None:
    clv = clv_table(history, world.customers["customer_id"], AS_OF)
    assert len(clv) == world.n and clv["customer_id"].is_unique
    assert (clv["clv_12m"] >= 0).all() and clv["p_alive"].between(0, 1).all()
    rho = spearmanr(clv["clv_12m"], world.value).statistic
    assert rho > 0.5, rho  # payments scale with the contract value in the simulator
    paying = set(history["customer_id"])
    silent = clv[~clv["customer_id"].isin(paying)]
    assert (silent["clv_12m"] == 0).all(), "no history: cold start, not an invention"


def test_rfm_scores_and_segments(world: World, history: pd.DataFrame) -> None:
    rfm = rfm_table(history, world.customers["customer_id"], AS_OF)
    assert rfm["rfm_score"].between(3, 15).all()
    assert {"champions", "lost", "at_risk"} <= set(rfm["rfm_segment"])
    champions = rfm[rfm["rfm_segment"] == "champions"]
    lost = rfm[rfm["rfm_segment"] == "lost"]
    assert champions["monetary"].median() > lost["monetary"].median()
    assert champions["recency_days"].median() < lost["recency_days"].median()


def test_personas_are_chosen_profiled_tested_and_assignable(world: World) -> None:
    model = fit_personas(world.customers, world.retained[:, 0])
    report = model.report
    assert report["k"] in range(3, 9)
    assert report["k"] == max(report["k_scores"], key=lambda k: report["k_scores"][k]["silhouette"])
    assert sum(p["size"] for p in report["profiles"]) == world.n
    assert report["kruskal_spend_p"] < 0.05 and report["kruskal_retention_p"] < 0.05
    newcomer = world.customers.sample(5, random_state=1)
    assert np.array_equal(
        model.assign(persona_inputs(newcomer)),
        model.assign(persona_inputs(world.customers))[newcomer.index],
    )


def test_missing_columns_are_named(world: World, history: pd.DataFrame) -> None:
    with pytest.raises(SchemaError, match="amount"):
        clv_table(history.drop(columns=["amount"]), world.customers["customer_id"], AS_OF)
    with pytest.raises(SchemaError, match="personas need at least"):
        fit_personas(world.customers.head(5))


def test_activity_windows_count_the_last_hour_day_and_week(world: World) -> None:
    from datetime import timedelta

    from features.jobs import activity_windows
    from simulator.events import generate_events

    events = generate_events(world, days=7.0, start=AS_OF - timedelta(days=7))
    windows = activity_windows(events, world.n, AS_OF)
    assert len(windows) == world.n
    assert (windows["events_1h"] <= windows["events_24h"]).all()
    assert (windows["events_24h"] <= windows["events_7d"]).all()
    age = 7 * 86_400 - events.occurred_s  # the window ends at AS_OF; later events are unknown
    assert windows["events_7d"].sum() == int(((age >= 0) & (age <= 7 * 86_400)).sum())
    assert windows["events_24h"].sum() == int(((age >= 0) & (age <= 86_400)).sum())
    assert windows["distinct_features_7d"].between(0, 12).all()
    assert windows["distinct_features_7d"].max() > 0
