"""The Grafana dashboard queries only metrics the engine really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

from prometheus_client import CollectorRegistry

from stream_app.metrics import EngineMetrics

DASHBOARD = Path(__file__).resolve().parents[1] / "deploy/grafana/dashboards/nba-engine.json"
SUFFIXES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "info": ("_info",),
    "gauge": ("",),
}


def exported_series() -> set[str]:
    registry = CollectorRegistry()
    EngineMetrics.create(registry)
    names = set()
    for family in registry.collect():
        for suffix in SUFFIXES.get(family.type, ("",)):
            names.add(family.name + suffix)
    return names


def test_every_panel_queries_exported_metrics() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_series() | {"up"}
    used = set()
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            names = set(re.findall(r"\b(nba_[a-z_]+|up)\b(?=[{\[\s)]|$)", target["expr"]))
            assert names, (panel["title"], target["expr"])
            assert names <= exported, (panel["title"], names - exported)
            used |= names
    assert {
        "nba_events_total",
        "nba_decision_latency_seconds_bucket",
        "nba_budget_spent_dollars",
    } <= used
