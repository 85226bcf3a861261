"""Personas on Customer Personality Analysis (../shared/data), through the project file."""

from __future__ import annotations

from features.personas import persona_report
from ingest.project import load_project
from ingest.validate import validate_project
from tests.ingest.test_public_datasets import EXAMPLES


def test_personas_are_chosen_by_silhouette_named_and_tested() -> None:
    project = load_project(EXAMPLES / "customer_personality/nba.yaml")
    _, tables = validate_project(project)
    customers = {t.table: t.frame for t in tables}["customers"]
    labels, report = persona_report(project, customers, seed=0)
    scores = report["k_scores"]
    assert report["k"] == max(scores, key=lambda k: scores[k]["silhouette"])
    assert {"calinski_harabasz", "davies_bouldin"} <= set(scores[report["k"]])
    assert sum(p["customers"] for p in report["profiles"]) == len(customers) == labels.size
    assert all(p["name"].startswith(("high ", "low ")) for p in report["profiles"])
    spend = report["tests"]["spend"]
    assert spend["kruskal_p"] < 1e-10  # clustered on the spend columns: they differ
    pairs = spend["pairs_holm"]
    assert len(pairs) == report["k"] * (report["k"] - 1) // 2
    assert all(pair["p_holm"] >= pair["p"] for pair in pairs)
