"""`nba response` and `nba features personas`: segments and the response model of an import."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import typer

from features.personas import persona_report
from ingest.importer import imported_table
from ingest.project import Project
from model_export.design import DesignMatrix
from model_export.response import response_report
from policies.errors import ConfigError

__all__ = ["personas_of_import", "response_of_import"]


def personas_of_import(project: Project, data: Path, seed: int) -> dict[str, Any]:
    _, report = persona_report(project, imported_table(data, "customers"), seed)
    typer.echo(f"k = {report['k']} by silhouette ({report['k_scores'][report['k']]})")
    for profile in report["profiles"]:
        typer.echo(f"  persona {profile['persona']}: {profile['name']} ({profile['customers']:,})")
    for name, test in report["tests"].items():
        differ = sum(pair["differ"] for pair in test["pairs_holm"])
        typer.echo(
            f"  {name}: Kruskal-Wallis H {test['kruskal_h']:.1f}, p {test['kruskal_p']:.3g}; "
            f"{differ} of {len(test['pairs_holm'])} pairs differ (Mann-Whitney, Holm)"
        )
    return report


def response_of_import(
    project: Project, data: Path, outcome: str | None, seed: int
) -> dict[str, Any]:
    """The response model without, then with, persona features."""
    name = outcome or project.declared_outcome().name
    if project.declared_outcome().columns.get(name) != "binary":
        raise ConfigError(f"--outcome {name!r} is not a binary outcome of the project")
    customers = imported_table(data, "customers")
    frame = customers.merge(imported_table(data, "experiments"), on="customer_id")
    x = DesignMatrix(project).fit(frame).transform(frame)
    y = frame[name].to_numpy(float)
    reports = {"without_personas": response_report(x, y, seed)}
    if project.personas is not None:
        labels, _ = persona_report(project, frame, seed)
        one_hot = pd.get_dummies(labels).to_numpy(np.float32)
        reports["with_personas"] = response_report(np.hstack([x, one_hot]), y, seed)
    for variant, report in reports.items():
        for model in ("xgboost", "logistic"):
            r = report[model]
            low, high = r["roc_auc_ci"]
            typer.echo(
                f"{variant}, {model}: ROC-AUC {r['roc_auc']:.3f} [{low:.3f}, {high:.3f}]; at "
                f"{r['threshold']:.2f} (max F1): precision {r['precision']:.2f}, recall "
                f"{r['recall']:.2f}, F1 {r['f1']:.2f}, confusion {r['confusion']['matrix']}"
            )
    return {"outcome": name, **reports}
