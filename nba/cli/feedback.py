"""`nba experiment ...`, `nba ope`, `nba retrain`, `nba report`: the loop closed from the topics."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from nba.cli.common import (
    ImportOption,
    ProjectOption,
    ValuesOption,
    check_alpha,
    check_positive,
    read_values,
    write_json,
)
from policies.errors import ConfigError
from stream_app.settings import load_settings

__all__ = ["campaign", "experiment_app", "ope", "report", "retrain"]

experiment_app = typer.Typer(
    help="A/B tests: plan their size, read out the holdout test.",
    no_args_is_help=True,
)


@experiment_app.command("plan")
def experiment_plan(
    baseline: Annotated[float, typer.Option(help="Baseline rate, e.g. the retention rate 0.82.")],
    mde: Annotated[float, typer.Option(help="Minimum detectable absolute change, e.g. 0.02.")],
    alpha: Annotated[float, typer.Option(help="Significance level (two-sided).")] = 0.05,
    power: Annotated[float, typer.Option(help="Power wanted, e.g. 0.8 or 0.9.")] = 0.8,
    base: Annotated[
        Path | None,
        typer.Option(
            help="customers.parquet to assign: treatment/holdout per risk x value x tenure."
        ),
    ] = None,
    holdout_share: Annotated[float, typer.Option(help="Share of each stratum held out.")] = 0.5,
    out: Annotated[Path, typer.Option(help="Where to write the assignment (parquet).")] = Path(
        "data/assignment.parquet"
    ),
    seed: Annotated[int, typer.Option(help="Random seed of the assignment.")] = 0,
) -> None:
    """Customers needed per arm to detect a change.

    With --base, also a stratified treatment/holdout assignment of that base (churn risk from
    the promoted model x contract value x tenure).
    """
    from feedback.experiments import sample_size_per_arm

    n = sample_size_per_arm(baseline, mde, alpha, power)
    typer.echo(
        f"{n:,} customers per arm (alpha {alpha}, power {power}, {baseline} -> {baseline + mde})"
    )
    if base is not None:
        from nba.commands.feedback import assign_base

        assignment = assign_base(load_settings(), base, holdout_share, seed, out)
        arms = assignment["arm"].value_counts()
        smallest = int(arms.min())
        typer.echo(
            f"wrote {out}: {arms.get('treatment', 0):,} treatment, {arms.get('holdout', 0):,} "
            f"holdout over {assignment['stratum'].nunique()} strata; "
            + ("enough for the test" if smallest >= n else f"UNDERPOWERED: {smallest:,} < {n:,}")
        )


@experiment_app.command("report")
def experiment_report(
    out: Annotated[
        Path | None, typer.Option(help="Also write the full report as JSON here.")
    ] = None,
    alpha: Annotated[float, typer.Option(help="Significance level of tests and CIs.")] = 0.05,
) -> None:
    """Treatment vs holdout, read from the actions and outcomes.

    NBA_TOPIC_ACTIONS joined to NBA_TOPIC_OUTCOMES: retention per arm with CIs, lift, p-value,
    power, cost per save, ROI; per segment and per action; guardrails (complaints, opt-outs);
    what the join had to leave out.
    """
    from nba.commands.feedback import load_feedback, render_report

    check_alpha(alpha)
    report = load_feedback(load_settings()).report(alpha)
    typer.echo(render_report(report))
    if out is not None:
        write_json(out, report)


def ope(
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder with customers.parquet: the logged customers' features (default "
            "data/world); with --project, an import (default NBA_IMPORTED_DATA)."
        ),
    ] = None,
    candidate: Annotated[
        list[str] | None,
        typer.Option(
            help="A registered model version to evaluate (repeatable; default: the champion)."
        ),
    ] = None,
    budget_factor: Annotated[
        float, typer.Option(help="The candidates' budget as a multiple of the logged spend.")
    ] = 1.0,
    alpha: Annotated[float, typer.Option(help="1 - confidence of the intervals.")] = 0.05,
    project: Annotated[
        Path | None,
        typer.Option(help="A project file: value on its import's past campaign instead."),
    ] = None,
    values: ValuesOption = None,
) -> None:
    """Value candidate models off-policy on the logged decisions.

    With --project, the log is the import's past campaign: each candidate's policy at
    --budget-factor times the campaign's spend, against the campaign as it ran, nobody,
    everyone, and random targeting of as many customers (IPS, SNIPS and DR; DR shown).

    What each candidate's policy would earn per decision (IPS, SNIPS, doubly robust, with
    CIs), from the logged decisions, their propensities and outcomes.
    """
    check_alpha(alpha)
    check_positive(budget_factor=budget_factor)
    if project is not None:
        _project_ope(project, data, candidate, budget_factor, alpha, values)
        return
    data = data or Path("data/world")
    from feedback.champion_challenger import evaluate_candidates, off_policy_log
    from model_export.manifest import Registry
    from nba.commands.feedback import load_feedback, logging_model, read_snapshot, render_estimates
    from policies.catalog import default_catalog

    settings = load_settings()
    registry = Registry(settings.model_registry)
    catalog = default_catalog()
    snapshot = read_snapshot(data / "customers.parquet")
    served = logging_model(registry, catalog)
    versions = candidate or [served.version]
    log = off_policy_log(load_feedback(settings).joined, snapshot, served, catalog)
    found = evaluate_candidates(
        log, registry, catalog, {v: v for v in versions}, budget_factor, alpha
    )
    typer.echo(render_estimates(found))
    limited = int(log.unavailable.any(axis=1).sum())
    if limited:
        typer.echo(
            f"{limited:,} of {log.unavailable.shape[0]:,} decisions were made after an action's "
            "capacity had run out: the candidates are valued without that action there"
        )


def _project_ope(
    project: Path,
    data: Path | None,
    candidate: list[str] | None,
    budget_factor: float,
    alpha: float,
    values: Path | None,
) -> None:
    from ingest.project import load_project
    from model_export.manifest import Registry
    from nba.commands.models import project_ope, render_project_ope

    settings = load_settings()
    found = project_ope(
        Registry(settings.model_registry),
        load_project(project),
        data or settings.imported_data,
        candidate,
        budget_factor,
        alpha,
        read_values(values),
    )
    typer.echo(render_project_ope(found))


def retrain(
    data: Annotated[
        Path,
        typer.Option(
            help="Folder with customers.parquet (feature snapshots with snapshot_at) and, "
            "for --source both or experiment, the newest experiment.parquet."
        ),
    ] = Path("data/world"),
    learner: Annotated[
        str,
        typer.Option(help="Uplift learner: sp (pooled S, the default), s, t, x, dr, r or ct."),
    ] = "sp",
    seed: Annotated[int, typer.Option(help="Random seed of the split and the models.")] = 0,
    margin: Annotated[
        float, typer.Option(help="Dollars per decision the challenger must win by (DR).")
    ] = 0.0,
    source: Annotated[
        str,
        typer.Option(
            help="What the challenger learns from: both (the engine's holdout and exploration "
            "decisions with outcomes, plus experiment.parquet), log, or experiment."
        ),
    ] = "both",
) -> None:
    """Train a challenger; promote it only if it beats the champion.

    It learns from the engine's own randomized decisions (holdout and exploration arms, joined
    to their outcomes, with the customer's features as of each decision and the design
    propensities) and, by default, from the newest experiment too. The challenger is evaluated
    off-policy against the champion on the logged decisions and promoted only if it wins by
    the margin with its CI above zero. Running workers pick up a promoted model within
    NBA_MODEL_RELOAD_S seconds, without a restart.
    """
    from rich.console import Console

    from nba.commands.feedback import retrain as run_retrain

    result = run_retrain(load_settings(), data, learner, seed, margin, Console(stderr=True), source)
    verdict = "PROMOTED" if result.promoted else "not promoted"
    typer.echo(
        f"challenger {result.challenger}: {verdict}. DR per decision "
        f"{result.challenger_value:,.2f} vs champion {result.champion} "
        f"{result.champion_value:,.2f}; difference "
        f"{result.difference:+,.2f} [{result.difference_ci[0]:+,.2f}, "
        f"{result.difference_ci[1]:+,.2f}]; {result.reason}"
    )


def report(
    out: Annotated[Path, typer.Option(help="Where to write the HTML page.")] = Path(
        "nba-report.html"
    ),
    data: Annotated[
        Path | None,
        typer.Option(
            help="Folder with customers.parquet: adds the Qini curve and drift; with --project, "
            "the import (default NBA_IMPORTED_DATA)."
        ),
    ] = None,
    project: Annotated[
        Path | None,
        typer.Option(help="A project file: report its import's past campaign instead."),
    ] = None,
    seed: Annotated[int, typer.Option(help="With --project: the seed of the split.")] = 0,
) -> None:
    """The decision report: one self-contained HTML page.

    From the engine's topics: lift by arm with CIs, Qini curve, spend vs budget over time,
    decisions by segment, drift, guardrails. With --project: what the import's past campaign
    did, in plain words, what targeting would have earned, and where the effect differs; every
    number also goes to a JSON file beside the page.
    """
    if project is not None:
        _campaign_page(project, data, seed, out)
        return
    from nba.commands.feedback import decision_report

    path = decision_report(load_settings(), data, out)
    typer.echo(f"wrote {path}; open it in a browser")


def _campaign_page(project: Path, data: Path | None, seed: int, out: Path) -> None:
    from feedback.campaign import analyze_campaign
    from feedback.campaign_report import render_campaign_report
    from ingest.project import load_project
    from model_export.experiment import load_campaign
    from nba.commands.files import write_output

    loaded = load_project(project)
    result = analyze_campaign(
        load_campaign(data or load_settings().imported_data, loaded), seed=seed
    )
    numbers = out.with_suffix(".json")
    write_json(numbers, result)
    page = render_campaign_report(result, numbers.name)
    write_output(out, lambda path: path.write_text(page))
    typer.echo(f"wrote {out}; open it in a browser")


def attribution(
    data: Annotated[
        Path,
        typer.Option(
            help="Folder with touches and conversions (.csv or .parquet), or an import of them."
        ),
    ] = Path("data/journeys"),
    model: Annotated[
        str,
        typer.Option(
            help="Credit model: hazard (incremental conversions; reads unpaid touches such as "
            "site visits as context), markov, shapley, last_touch or first_touch."
        ),
    ] = "hazard",
    channels: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated known paid channels; touches of others are left out "
            "(unpaid channels are always kept as context)."
        ),
    ] = None,
    rounds: Annotated[int, typer.Option(help="Bootstrap resamples of the intervals.")] = 50,
    out: Annotated[Path, typer.Option(help="Where to write the report (JSON).")] = Path(
        "attribution.json"
    ),
    page: Annotated[
        Path | None, typer.Option(help="Also write the report as a web page (HTML) here.")
    ] = None,
    sequence: Annotated[
        bool,
        typer.Option(
            help="Also train the sequence model (an LSTM; about 35 s per 100,000 journeys) "
            "and compare its credit and AUC."
        ),
    ] = False,
    catalog: Annotated[
        Path | None,
        typer.Option(
            help="An action catalog (YAML) whose actions with an attribution_channel take "
            "that channel's cost per touch; needs --catalog-out."
        ),
    ] = None,
    catalog_out: Annotated[
        Path | None, typer.Option(help="Where to write the priced catalog (YAML).")
    ] = None,
) -> None:
    """Which channels earned the conversions.

    Credited conversions, cost per conversion and ROI per channel with bootstrap intervals,
    and a budget split. Touches of unknown channels, after the conversion, or repeated are
    left out and counted. A channel whose touches all cost 0 (site visits) is context, not
    credited. The default model pays a channel only for the conversions it adds (see
    attribution/README.md for which model to trust when).
    """
    from nba.commands.attribution import AttributionRequest, attribute_folder

    check_positive(rounds=rounds)
    if (catalog is None) != (catalog_out is None):
        raise ConfigError("--catalog and --catalog-out go together")
    known = tuple(c.strip() for c in channels.split(",") if c.strip()) if channels else None
    request = AttributionRequest(
        data, model, known, rounds, out, page, sequence, catalog, catalog_out
    )
    report = attribute_folder(request)
    dropped = report["input"]
    typer.echo(
        f"{dropped['touches_read']:,} touches: {dropped['unknown_channel']:,} of unknown "
        f"channels, {dropped['after_conversion']:,} after the conversion and "
        f"{dropped['duplicates']:,} repeated were left out"
    )
    for channel, row in report["channels"].items():
        roi = "n/a" if row["roi"] is None else f"{row['roi']:+.2f}"
        typer.echo(
            f"{channel}: {row['credited_conversions']:,.0f} conversions credited, spend "
            f"${row['spend']:,.2f}, ROI {roi}"
        )

    typer.echo(f"wrote {out}" + (f" and {page}; open it in a browser" if page else ""))


def campaign(
    project: ProjectOption = None,
    data: ImportOption = None,
    outcome: Annotated[
        str | None, typer.Option(help="Outcome column (default: the project's outcome).")
    ] = None,
    learner: Annotated[
        str, typer.Option(help="Uplift learner: s, sp (pooled S), t, x, dr, r (R-learner) or ct.")
    ] = "s",
    seed: Annotated[int, typer.Option(help="Random seed of the split and the models.")] = 0,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="Also refutation tests of the ATE and every learner's Qini beside EconML's "
            "causal forest (slower).",
        ),
    ] = False,
    out: Annotated[Path, typer.Option(help="Where to write the whole report (JSON).")] = Path(
        "campaign.json"
    ),
) -> None:
    """What a past campaign earned and whom it moved, from an import.

    Per action against the control: the ATE with a 95% interval, Qini / AUUC / uplift@30% of an
    uplift model on a held-out 30% (bootstrap intervals), CATE per segment, the value of
    targeting the top 10/30/50% (IPS, SNIPS, DR) against everyone and random, and response
    types. Run `nba data import` first.
    """
    from feedback.campaign import analyze_campaign
    from model_export.experiment import load_campaign
    from nba.commands.campaign import print_campaign
    from nba.commands.data import project_from

    settings = load_settings()
    loaded = load_campaign(data or settings.imported_data, project_from(project, settings), outcome)
    result = analyze_campaign(loaded, learner, seed, robustness)
    print_campaign(result)
    write_json(out, result)
