"""`nba train`, `nba export`, `nba evaluate`, `nba models ...`: from data to a served bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nba.cli.common import ImportOption, ProjectOption, ValuesOption, read_values
from policies.errors import ConfigError
from stream_app.settings import Settings, load_settings

__all__ = ["response", "evaluate", "export", "models_app", "train"]

models_app = typer.Typer(
    help="The model registry: list versions, promote the one served.", no_args_is_help=True
)


@models_app.command("list")
def models_list(
    demo: Annotated[
        bool, typer.Option("--demo", help="List the registry of the latest `nba demo` run.")
    ] = False,
) -> None:
    """Registered versions; * marks the promoted one.

    The registry is NBA_MODEL_REGISTRY; `nba demo` keeps its own under NBA_STATE_DIR/demo/.
    """
    from model_export.manifest import Registry
    from nba.commands.models import describe

    settings = load_settings()
    registry = Registry(_latest_demo_registry(settings) if demo else settings.model_registry)
    versions = registry.versions()
    typer.echo(f"registry: {registry.root}")
    if not versions:
        typer.echo(
            "no models yet: train and export one (nba train, nba export), or "
            "`nba models list --demo` for the demo's"
        )
    for manifest in versions:
        typer.echo(describe(manifest, registry.champion()))


def _latest_demo_registry(settings: Settings) -> Path:
    runs = sorted((settings.state_dir / "demo").glob("*/models"), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise ConfigError(
            f"no demo run under {settings.state_dir / 'demo'} (NBA_STATE_DIR): run `nba demo`"
        )
    return runs[-1]


@models_app.command("promote")
def models_promote(version: Annotated[str, typer.Argument(help="The version to serve.")]) -> None:
    """Serve a version, after checking its checksum and parity."""
    from model_export.manifest import Registry

    manifest = Registry(load_settings().model_registry).promote(version)
    typer.echo(f"promoted {manifest.version}")


def train(
    project: Annotated[
        Path | None,
        typer.Option(help="A project file: learn from its import's past campaign instead."),
    ] = None,
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder written by `nba simulate world` (default data/world); with --project, "
            "the import (default NBA_IMPORTED_DATA)."
        ),
    ] = None,
    learner: Annotated[
        str,
        typer.Option(help="Uplift learner: sp (pooled S, the default), s, t, x, dr, r or ct."),
    ] = "sp",
    seed: Annotated[int, typer.Option(help="Random seed of the split and the models.")] = 0,
    outcome: Annotated[
        str | None, typer.Option(help="With --project: the outcome (default: the declared one).")
    ] = None,
    values: ValuesOption = None,
    out: Annotated[
        Path | None, typer.Option(help="Run folder (default models/runs/<time>).")
    ] = None,
) -> None:
    """Train the churn and uplift models; write a run and its report.

    The run folder holds XGBoost's own model files, held-out rows and an HTML report.
    Without --project: the simulated world's retention and expansion models. With --project:
    the project's outcome, learned from the import's experiments table, and the policy's
    held-out value on that campaign.
    """
    from rich.console import Console

    if project is None:
        from nba.commands.models import run_training

        folder = run_training(data or Path("data/world"), learner, seed, out, Console())
    else:
        folder = _train_project(project, data, (learner, seed, outcome), values, out)
    typer.echo(
        f"run written: {folder} (open {folder / 'report.html'}); next: nba export --run {folder}"
    )


def _train_project(
    project: Path,
    data: Path | None,
    choice: tuple[str, int, str | None],
    values: Path | None,
    out: Path | None,
) -> Path:
    """``choice``: the learner, the seed and the outcome."""
    from rich.console import Console

    from ingest.project import load_project
    from nba.commands.models import TrainingChoice, run_project_training

    loaded = load_project(project)
    folder, trained = run_project_training(
        loaded,
        data or load_settings().imported_data,
        TrainingChoice(*choice),
        out,
        read_values(values),
        Console(stderr=True),
    )
    typer.echo(f"propensity: {trained.metrics['propensity']}")
    for action, metrics in trained.metrics["uplift"].items():
        typer.echo(
            f"{action}: held-out Qini {metrics['qini']:.4f}, uplift@30% "
            f"{metrics['uplift_at_30']:+.4f} ({trained.outcome})"
        )
    value = trained.metrics["policy_value_held_out"]
    policy = value["policies"]["model policy"]["net_value"]["dr"]
    typer.echo(
        f"policy at the campaign's spend (${value['budget']:,.0f} on "
        f"{value['rows']:,} held-out customers): net value per customer {policy['value']:,.2f} "
        f"[{policy['ci_low']:,.2f}, {policy['ci_high']:,.2f}] (DR) vs "
        f"{value['campaign_as_run']['net_value']:,.2f} as the campaign ran"
    )
    return folder


def export(
    run: Annotated[Path, typer.Option(help="A run folder written by `nba train`.")],
    version: Annotated[
        str | None, typer.Option(help="Version name (default: the run's name).")
    ] = None,
) -> None:
    """Build the ONNX bundle, check parity, register it.

    Registered only if the bundle matches the native models within 1e-5.
    """
    from model_export.manifest import Registry
    from nba.commands.models import run_export

    manifest = run_export(run, Registry(load_settings().model_registry), version)
    typer.echo(
        f"registered {manifest.version}: parity {manifest.parity.max_abs_diff:.1e} on "
        f"{manifest.parity.rows} rows; next: nba models promote {manifest.version}"
    )


def evaluate(
    version: Annotated[str, typer.Option(help="A registered model version.")],
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder with experiment.parquet (and truth.parquet), default data/world; with "
            "--project, an import (default NBA_IMPORTED_DATA)."
        ),
    ] = None,
    project: Annotated[
        Path | None, typer.Option(help="A project file: evaluate on its import's campaign.")
    ] = None,
) -> None:
    """Qini, AUUC and uplift@k of a registered bundle on data."""
    from model_export.manifest import Registry
    from nba.commands.models import dump, evaluate_project_version, evaluate_version

    settings = load_settings()
    registry = Registry(settings.model_registry)
    if project is None:
        report = evaluate_version(registry, version, data or Path("data/world"))
    else:
        from ingest.project import load_project

        report = evaluate_project_version(
            registry, version, load_project(project), data or settings.imported_data
        )
    typer.echo(dump(report))


def response(
    project: ProjectOption = None,
    data: ImportOption = None,
    outcome: Annotated[
        str | None, typer.Option(help="Binary outcome column (default: the project's).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed of the folds and the models.")] = 0,
    out: Annotated[Path, typer.Option(help="Where to write the report (JSON).")] = Path(
        "response.json"
    ),
) -> None:
    """Who responds: a cross-validated response model on an import.

    With and without persona features.

    ROC-AUC with a bootstrap interval; precision, recall, F1 and the confusion matrix at the
    threshold that maximizes F1. Reads an import's customers and experiments tables.
    """
    from nba.cli.common import write_json
    from nba.commands.data import project_from
    from nba.commands.response import response_of_import

    settings = load_settings()
    report = response_of_import(
        project_from(project, settings), data or settings.imported_data, outcome, seed
    )
    write_json(out, report)
