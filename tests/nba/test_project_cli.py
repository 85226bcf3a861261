"""`nba train / export / models promote / evaluate / score --all / ope` with --project, as an
analyst runs them after `nba data import` (Hillstrom's e-mail experiment)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from ingest.project import Project
from nba.cli import app

HILLSTROM = Path(__file__).resolve().parents[2] / "examples/hillstrom/nba.yaml"


def _run(argv: list[str], registry: Path) -> str:
    result = CliRunner().invoke(
        app, argv, prog_name="nba", env={"NBA_MODEL_REGISTRY": str(registry)}
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_a_project_goes_from_its_import_to_decisions(
    hillstrom_import: tuple[Project, Path], tmp_path: Path
) -> None:
    _, data = hillstrom_import
    registry, run = tmp_path / "registry", tmp_path / "run"
    project = ["--project", str(HILLSTROM), "--data", str(data)]
    trained = _run(["train", *project, "--out", str(run)], registry)
    assert "propensity: logged with each assignment" in trained
    assert "womens_email: held-out Qini" in trained and "(DR)" in trained
    assert "registered v1" in _run(["export", "--run", str(run), "--version", "v1"], registry)
    _run(["models", "promote", "v1"], registry)
    evaluated = _run(["evaluate", "--version", "v1", *project], registry)
    assert '"qini"' in evaluated and "trained on this campaign" in evaluated
    out = tmp_path / "decisions.parquet"
    scored = _run(["score", "--all", *project, "--budget", "250", "--out", str(out)], registry)
    assert "64,000 customers scored" in scored
    decisions = pd.read_parquet(out)
    assert len(decisions) == 64_000 and decisions["cost"].sum() <= 250.0 + 1e-9
    assert set(decisions["action"]) <= {"do_nothing", "mens_email", "womens_email"}
    valued = _run(["ope", *project, "--budget-factor", "0.5"], registry)
    assert "model policy" in valued and "everyone: womens_email" in valued
