"""`nba campaign`: the printed summary of a past campaign's report (the JSON has it all)."""

from __future__ import annotations

from typing import Any

import typer

__all__ = ["print_campaign"]


def _interval(entry: dict[str, Any], scale: float, unit: str) -> str:
    return (
        f"{entry['effect'] * scale:+.2f}{unit} "
        f"[{entry['ci_low'] * scale:+.2f}, {entry['ci_high'] * scale:+.2f}]"
    )


def print_campaign(report: dict[str, Any]) -> None:
    binary = "response_types" in report
    scale, unit = (100.0, " pts") if binary else (1.0, "")
    typer.echo(
        f"{report['project']}: outcome {report['outcome']}, {report['rows']:,} customers, "
        f"learner {report['learner']}"
    )
    typer.echo(f"propensity: {report['propensity']}")
    for action, ate in report["ate"].items():
        quality = report["held_out"][action]
        low, high = quality["qini_ci"]
        typer.echo(
            f"  {action}: ATE {_interval(ate, scale, unit)} "
            f"({ate['n_treated']:,} vs {ate['n_control']:,}); held-out Qini {quality['qini']:.4f} "
            f"[{low:.4f}, {high:.4f}]"
        )
    typer.echo("policy value per customer (DR, held-out):")
    for name, estimates in report["policy_value"].items():
        dr = estimates["dr"]
        typer.echo(
            f"  {name:<28} {dr['value'] * scale:.2f}{unit} "
            f"[{dr['ci_low'] * scale:.2f}, {dr['ci_high'] * scale:.2f}]"
        )
    for action, checks in report.get("refutations", {}).items():
        placebo, subset = checks["placebo_treatment"], checks["data_subset"]
        typer.echo(
            f"  refutations, {action}: adjusted ATE {checks['adjusted_ate'] * scale:+.2f}{unit}; "
            f"placebo {placebo['effect'] * scale:+.2f}{unit} (p {placebo['p_value']:.2f}); "
            f"random common cause moves it {checks['random_common_cause']['change'] * scale:+.3f}"
            f"{unit}; 80% subsets {subset['mean'] * scale:+.2f} sd {subset['sd'] * scale:.2f}"
        )
    for learner, qinis in report.get("learners_qini", {}).items():
        shown = ", ".join(f"{action} {value:.4f}" for action, value in qinis.items())
        typer.echo(f"  held-out Qini, {learner}: {shown}")
