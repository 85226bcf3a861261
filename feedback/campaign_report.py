"""A past campaign's report as one self-contained HTML page (`nba report --project`), written for
a marketing lead: what each action did, in plain words with its interval, whom a model would
target and what that would earn, where the effect differs, and how many customers each figure
rests on. The full numbers are in the JSON written beside it (`nba campaign`'s report), not on
the page.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from model_export.report import STYLE, figure_html, png  # noqa: E402

__all__ = ["TABLE_STYLE", "label", "render_campaign_report"]

TABLE_STYLE = (
    "table{border-collapse:collapse;margin:1em 0} td,th{padding:4px 10px;"
    "border-bottom:1px solid #ddd;text-align:right} td:first-child,th:first-child{text-align:left}"
)


def label(name: str) -> str:
    """``mens_email`` -> "Mens email": names as people write them."""
    text = name.replace("_", " ").strip()
    return text[:1].upper() + text[1:]


def _amount(value: float, binary: bool, signed: bool = False) -> str:
    """A binary outcome's rate in percent (or percentage points), a continuous one as money."""
    sign = "+" if signed else ""
    if binary:
        return f"{100 * value:{sign},.1f}" + (" pts" if signed else "%")
    return f"{'-' if value < 0 else ('+' if signed else '')}${abs(value):,.2f}"


def _headline(action: str, ate: dict[str, Any], outcome: str, binary: bool) -> str:
    effect, low, high = ate["effect"], ate["ci_low"], ate["ci_high"]
    sizes = f"{ate['n_treated']:,} customers who got it against {ate['n_control']:,} who did not"
    if low <= 0 <= high:
        verdict = "made no difference we can distinguish from zero"
    else:
        verdict = "raised" if effect > 0 else "lowered"
        verdict += (
            f" the {outcome} {'rate' if binary else 'per customer'} from "
            f"{_amount(ate['mean_control'], binary)} to {_amount(ate['mean_treated'], binary)}"
        )
    return (
        f"<li><b>{html.escape(label(action))}</b> {verdict}: "
        f"{_amount(effect, binary, True)} (95% interval {_amount(low, binary, True)} to "
        f"{_amount(high, binary, True)}), on {sizes}.</li>"
    )


def _policy_figure(values: dict[str, Any], outcome: str, binary: bool) -> str:
    names = list(values)
    dr = [values[n]["dr"] for n in names]
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(names) + 1))
    centers = [d["value"] for d in dr]
    errors = [[d["value"] - d["ci_low"] for d in dr], [d["ci_high"] - d["value"] for d in dr]]
    axis.barh(range(len(names)), centers, xerr=errors, color="#4c72b0", capsize=3)
    axis.set_yticks(range(len(names)), [label(n) for n in names])
    axis.invert_yaxis()
    scale = 100.0 if binary else 1.0
    unit = "%" if binary else ""
    axis.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: f"{scale * x:,.1f}{unit}" if binary else f"${x:,.2f}")
    )
    n = dr[0]["n"] if dr else 0
    axis.set_xlabel(
        f"{outcome} {'rate' if binary else 'per customer'} (doubly robust estimate, 95% "
        f"interval; {n:,} held-out customers)"
    )
    return png(figure)


def _quality_rows(held_out: dict[str, Any], binary: bool) -> str:
    rows = []
    for action, m in held_out.items():
        low, high = m["qini_ci"]
        verdict = "better than chance" if low > 0 else "not distinguishable from chance"
        lift_low, lift_high = m["uplift_at_30_ci"]
        rows.append(
            f"<tr><td>{html.escape(label(action))}</td><td>{m['qini']:.3f} "
            f"[{low:.3f}, {high:.3f}]</td><td>{verdict}</td><td>"
            f"{_amount(m['uplift_at_30'], binary, True)} [{_amount(lift_low, binary, True)}, "
            f"{_amount(lift_high, binary, True)}]</td></tr>"
        )
    return "".join(rows)


def _cate_rows(cate: list[dict[str, Any]], binary: bool, top: int = 15) -> str:
    ranked = sorted(cate, key=lambda r: -abs(r["effect"]))[:top]
    return "".join(
        f"<tr><td>{html.escape(label(r['feature']))} = {html.escape(str(r['level']))}</td>"
        f"<td>{html.escape(label(r['action']))}</td>"
        f"<td>{_amount(r['effect'], binary, True)} [{_amount(r['ci_low'], binary, True)}, "
        f"{_amount(r['ci_high'], binary, True)}]</td>"
        f"<td>{_amount(r['predicted_uplift'], binary, True)}</td>"
        f"<td>{r['n_treated']:,} / {r['n_control']:,}</td></tr>"
        for r in ranked
    )


def render_campaign_report(report: dict[str, Any], json_name: str) -> str:
    """The page; ``json_name``: the file beside it that holds every number."""
    binary = "response_types" in report
    outcome = label(report["outcome"]).lower()
    title = f"What the {label(report['project'])} campaign did"
    headlines = "".join(
        _headline(action, ate, outcome, binary) for action, ate in report["ate"].items()
    )
    chart = figure_html(
        "What each targeting would have earned (held-out customers)",
        _policy_figure(report["policy_value"], outcome, binary),
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{STYLE} {TABLE_STYLE}</style>
</head><body>
<h1>{html.escape(title)}</h1>
<p>{report["rows"]:,} customers; outcome: {html.escape(outcome)}; propensities:
{html.escape(report["propensity"])}. Made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with the
{html.escape(report["learner"].upper())}-learner; every number is in
<a href="{html.escape(json_name)}">{html.escape(json_name)}</a>.</p>
<h2>What each action did</h2>
<ul>{headlines}</ul>
{chart}
<p>"Model: top N%" e-mails the N% of customers the model expects to respond most, each with
its best action; "Random: N%" as many chosen at random. Valued on customers the model did not
train on.</p>
<h2>Can a model tell who responds?</h2>
<table><tr><th>action</th><th>Qini [95% interval]</th><th>ranking</th>
<th>lift in the top 30% [95% interval]</th></tr>{_quality_rows(report["held_out"], binary)}
</table>
<h2>Where the effect differs</h2>
<p>The largest effects by customer group (difference of the arms' means, all customers), beside
the model's prediction for the group (held-out customers).</p>
<table><tr><th>group</th><th>action</th><th>effect [95% interval]</th><th>model predicts</th>
<th>customers treated / not</th></tr>{_cate_rows(report["cate"], binary)}</table>
</body></html>
"""
