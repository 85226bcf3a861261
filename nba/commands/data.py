"""`nba data validate | import`: what the shell adds to the data contract (ingest/)."""

from __future__ import annotations

from pathlib import Path

import typer

from ingest.project import Project, load_project
from ingest.validate import TableReport
from policies.errors import ConfigError
from stream_app.settings import Settings

__all__ = ["print_reports", "project_from"]


def project_from(option: Path | None, settings: Settings) -> Project:
    path = option or settings.project
    if path is None:
        raise ConfigError("no project file: pass --project or set NBA_PROJECT")
    return load_project(path)


def print_reports(reports: list[TableReport]) -> bool:
    """Each table's summary and first problems; True when every table passed."""
    for report in reports:
        typer.echo(report.summary())
        for problem in report.problems:
            typer.echo(f"  {problem}")
        hidden = report.problem_count - len(report.problems)
        if hidden > 0:
            typer.echo(f"  ... and {hidden:,} more")
    return all(report.ok for report in reports)
