"""`nba train | export | evaluate | models`: from simulated (or real) experiment data to a
registered, promoted ONNX bundle."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pandas as pd
from rich.console import Console
from rich.progress import Progress

from feedback.project_ope import project_policy_value
from ingest.project import Project
from model_export.bundle import OUTPUTS
from model_export.evaluation import uplift_report
from model_export.experiment import Campaign, load_campaign
from model_export.features import FEATURES, feature_matrix, training_frame
from model_export.manifest import Manifest, Registry, fingerprint
from model_export.project_models import ProjectTrained, train_project
from model_export.project_serving import ProjectScorer
from model_export.report import render_report
from model_export.runs import export_run, save_project_run, save_run
from model_export.training import train_models, true_uplift
from policies.arms import ArmConfig
from policies.catalog import default_catalog

__all__ = [
    "TrainingChoice",
    "evaluate_project_version",
    "evaluate_version",
    "project_ope",
    "render_project_ope",
    "run_export",
    "run_project_training",
    "run_training",
]

_STEPS = 4


@dataclass(frozen=True)
class TrainingChoice:
    learner: str = "sp"
    seed: int = 0
    outcome: str | None = None  # a project's outcome column; None: the one it declares


def _optional(data_dir: Path, name: str) -> pd.DataFrame | None:
    path = data_dir / f"{name}.parquet"
    return pd.read_parquet(path) if path.exists() else None


def run_training(
    data_dir: Path,
    learner: str,
    seed: int,
    out: Path | None,
    console: Console,
    experiment: pd.DataFrame | None = None,
) -> Path:
    """Train on ``experiment`` (default: data_dir's experiment.parquet) and save the run; the
    simulator's truth and legacy log in data_dir, when there, add their sections."""
    experiment = training_frame(data_dir, "experiment") if experiment is None else experiment
    actions = default_catalog().names
    folder = out or Path("models/runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with Progress(console=console) as progress:
        task = progress.add_task("training", total=_STEPS)

        def step(name: str) -> None:
            progress.update(task, advance=1, description=name)

        trained = train_models(
            experiment,
            actions,
            learner,
            seed,
            truth=_optional(data_dir, "truth"),
            legacy=_optional(data_dir, "history"),
            on_step=step,
        )
        step("report")
        save_run(trained, folder, render_report(trained, f"nba model run {folder.name}"))
        progress.update(task, completed=_STEPS, description="done")
    return folder


def run_export(run: Path, registry: Registry, version: str | None) -> Manifest:
    return export_run(run, registry, version or run.name)


def evaluate_version(registry: Registry, version: str, data_dir: Path) -> dict[str, Any]:
    """Score a data set with the registered bundle itself (onnxruntime) and report the metrics."""
    manifest = registry.verified(version)
    manifest.check_serves(FEATURES, default_catalog().names)
    frame = training_frame(data_dir, "experiment")
    session = ort.InferenceSession(
        str(registry.bundle_path(version)), providers=["CPUExecutionProvider"]
    )
    _, uplift, _ = session.run(list(OUTPUTS), {"features": feature_matrix(frame)})
    truth = _optional(data_dir, "truth")
    true = true_uplift(truth, frame["customer_id"], manifest.actions) if truth is not None else None
    return uplift_report(
        frame["retained"].to_numpy(np.float64),
        frame["treatment_index"].to_numpy(np.int64),
        uplift.astype(np.float64),
        manifest.actions,
        true,
    )


def describe(manifest: Manifest, champion: str | None) -> str:
    mark = "*" if manifest.version == champion else " "
    parity = f"parity {manifest.parity.max_abs_diff:.1e}"
    created = f"{manifest.created_at:%Y-%m-%d %H:%M}"
    return f"{mark} {manifest.version:<24} {manifest.learner:<3} {created} {parity}"


def dump(report: dict[str, Any]) -> str:
    return json.dumps(report, indent=2)


def run_project_training(
    project: Project,
    data: Path,
    choice: TrainingChoice,
    out: Path | None,
    clv: pd.DataFrame | None,
    console: Console,
) -> tuple[Path, ProjectTrained]:
    """Learn a project's models from its import's campaign; value the policy on held-out rows."""
    campaign = load_campaign(data, project, choice.outcome)
    folder = out or Path("models/runs") / datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    with console.status(f"training on {campaign.y.size:,} customers of {project.name}"):
        trained = train_project(campaign, choice.learner, choice.seed)
        rows = trained.test_rows
        trained.metrics["policy_value_held_out"] = project_policy_value(
            campaign, project, rows, trained.predict(campaign.x[rows]), seed=choice.seed, clv=clv
        )
        title = f"nba model run {folder.name} (project {project.name}, outcome {trained.outcome})"
        save_project_run(trained, folder, render_report(trained, title))
    return folder, trained


def evaluate_project_version(
    registry: Registry, version: str, project: Project, data: Path
) -> dict[str, Any]:
    """Qini, AUUC and uplift@k of a project bundle (onnxruntime) on an import's campaign."""
    campaign = load_campaign(data, project)
    policy = project.policy_config(ArmConfig())
    scorer = ProjectScorer.load(registry, project, policy.catalog, version)
    p_none, uplift, expansion = scorer.predict(campaign.frame)
    report = uplift_report(
        campaign.y,
        campaign.treatment,
        uplift if scorer.binary else expansion,
        campaign.actions,
    )
    return {"rows": int(campaign.y.size), "uplift": report, **_seen(registry, version, campaign)}


def _seen(registry: Registry, version: str, campaign: Campaign) -> dict[str, str]:
    """A warning when the model was trained on these very rows."""
    if registry.manifest(version).training_data_fingerprint != fingerprint(campaign.frame):
        return {}
    return {
        "warning": "the model was trained on this campaign (70% of its rows): these figures are "
        "optimistic; the run's report has the held-out ones, or evaluate on a later campaign"
    }


def project_ope(
    registry: Registry,
    project: Project,
    data: Path,
    versions: list[str] | None,
    budget_factor: float,
    alpha: float,
    clv: pd.DataFrame | None,
) -> dict[str, Any]:
    """Each candidate's policy valued off-policy on an import's whole campaign."""
    campaign = load_campaign(data, project)
    policy = project.policy_config(ArmConfig())
    rows = np.arange(campaign.y.size)
    found: dict[str, Any] = {}
    for version in versions or [registry.chosen(None)]:
        scorer = ProjectScorer.load(registry, project, policy.catalog, version)
        found[version] = {
            **project_policy_value(
                campaign,
                project,
                rows,
                scorer.predict(campaign.frame),
                budget_factor,
                alpha,
                clv=clv,
            ),
            **_seen(registry, version, campaign),
        }
    return found


def render_project_ope(found: dict[str, Any]) -> str:
    lines = []
    for version, report in found.items():
        run = report["campaign_as_run"]
        lines.append(
            f"model {version}: budget ${report['budget']:,.2f} ({report['budget_factor']:g} x "
            f"the campaign's spend), {report['policy_treated']:,} of {report['rows']:,} "
            f"customers treated; as the campaign ran: outcome {run['outcome']:.4f}, net value "
            f"{run['net_value']:,.2f} per customer"
        )
        lines.append(f"  {'policy':<28} {'outcome (DR)':>28} {'net value (DR)':>30}")
        for name, currencies in report["policies"].items():
            cells = [
                f"{e['value']:,.4f} [{e['ci_low']:,.4f}, {e['ci_high']:,.4f}]"
                for e in (currencies["outcome"]["dr"], currencies["net_value"]["dr"])
            ]
            lines.append(f"  {name:<28} {cells[0]:>28} {cells[1]:>30}")
        if "warning" in report:
            lines.append(f"  warning: {report['warning']}")
    return "\n".join(lines)
