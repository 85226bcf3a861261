"""The simulated world is read through the data contract like any team's data."""

from __future__ import annotations

from pathlib import Path

from ingest.project import load_project
from ingest.validate import validate_project
from nba.commands.simulate import write_world
from simulator.config import validated


def test_a_written_world_validates_under_its_own_project_file(tmp_path: Path) -> None:
    counts = write_world(validated(n_customers=500, seed=3), tmp_path, events_days=0.2)
    project = load_project(tmp_path / "nba.yaml")
    reports, tables = validate_project(project)
    assert {r.table: (r.rows_read, r.rows_rejected) for r in reports} == {
        "customers": (500, 0),
        "transactions": (counts["transactions.parquet"], 0),
        "events": (counts["events.jsonl"], 0),
        "experiments": (500, 0),
    }
    experiments = {t.table: t.frame for t in tables}["experiments"]
    assert set(experiments["action"]) <= set(project.action_names)
    assert experiments["action"].nunique() == len(project.action_names)
