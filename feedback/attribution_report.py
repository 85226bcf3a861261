"""`nba attribution --page`: what each channel earned, as one self-contained HTML page for a
marketing lead: credited conversions, cost per conversion and return on spend with their
intervals, the budget split, and every model's credit side by side with which to trust when.
The full numbers are in the JSON written beside it.
"""

from __future__ import annotations

import html
from datetime import UTC, datetime
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only; no display on servers
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from feedback.campaign_report import TABLE_STYLE, label  # noqa: E402
from model_export.report import STYLE, figure_html, png  # noqa: E402

__all__ = ["render_attribution_page"]

MODEL_NAMES = {
    "hazard": "Incremental (additive hazard)",
    "markov": "Markov removal effect",
    "shapley": "Shapley values",
    "last_touch": "Last touch",
    "first_touch": "First touch",
    "sequence": "Sequence model (LSTM)",
}
_TRUST = (
    "Last and first touch pay whichever channel happens to land last or first; a channel that "
    "follows intent (retargeting reaches people who already visited) lands just before "
    "conversions that would have happened anyway and is paid for them. Markov and Shapley "
    "spread the credit over the whole path but still read correlation. The incremental model "
    "compares days with and without each channel's touches in the same context (site visits "
    "today and yesterday), so it pays a channel only for the conversions it adds: trust it when "
    "the log holds what the targeting follows. When it does not, no model reading the log can "
    "tell the difference: keep a random holdout per channel."
)


def _count(value: float) -> str:
    return f"{value:,.0f}"


def _headline(channel: str, row: dict[str, Any]) -> str:
    low, high = row["credited_conversions_ci"]
    spend = f"${row['spend']:,.2f}"
    text = (
        f"<b>{html.escape(label(channel))}</b>: {_count(row['credited_conversions'])} conversions "
        f"credited (95% interval {_count(max(low, 0))} to {_count(max(high, 0))}) for {spend} spent"
    )
    if row["cost_per_conversion"] is not None:
        text += f", ${row['cost_per_conversion']:,.2f} per conversion"
    if row["roi"] is not None:
        verdict = "earned more than it cost" if row["roi"] > 0 else "earned less than it cost"
        roi_low, roi_high = row["roi_ci"]
        text += (
            f"; it {verdict}: return on spend {100 * row['roi']:+,.0f}% (interval "
            f"{100 * roi_low:+,.0f}% to {100 * roi_high:+,.0f}%)"
        )
    return f"<li>{text}.</li>"


def _credit_figure(channels: dict[str, dict[str, Any]]) -> str:
    names = list(channels)
    credited = [channels[c]["credited_conversions"] for c in names]
    low = [max(channels[c]["credited_conversions_ci"][0], 0.0) for c in names]
    high = [max(channels[c]["credited_conversions_ci"][1], 0.0) for c in names]
    errors = [[max(v - lo, 0.0) for v, lo in zip(credited, low, strict=True)]]
    errors.append([max(hi - v, 0.0) for v, hi in zip(credited, high, strict=True)])
    figure, axis = plt.subplots(figsize=(7, 0.45 * len(names) + 1))
    axis.barh(range(len(names)), credited, xerr=errors, color="#4c72b0", capsize=3)
    axis.set_yticks(range(len(names)), [label(n) for n in names])
    axis.invert_yaxis()
    axis.xaxis.set_major_formatter(FuncFormatter(lambda x, _: f"{x:,.0f}"))
    axis.set_xlabel("conversions credited (95% bootstrap interval)")
    return png(figure)


def _split_rows(split: dict[str, float]) -> str:
    if not split:
        return "<tr><td colspan=2>no channel earned more than it cost</td></tr>"
    return "".join(
        f"<tr><td>{html.escape(label(c))}</td><td>{100 * share:.1f}%</td></tr>"
        for c, share in sorted(split.items(), key=lambda item: -item[1])
    )


def _comparison_table(report: dict[str, Any]) -> str:
    channels = list(report["channels"])
    truth = report.get("truth")
    head = "".join(f"<th>{html.escape(label(c))}</th>" for c in channels)
    head += "<th>error against the truth</th>" if truth else ""
    rows = []
    if truth:
        cells = "".join(f"<td>{100 * truth.get(c, 0.0):.1f}%</td>" for c in channels)
        rows.append(f"<tr><td><b>Truth (simulated)</b></td>{cells}<td></td></tr>")
    for name, entry in report["comparison"].items():
        cells = "".join(f"<td>{100 * entry['shares'].get(c, 0.0):.1f}%</td>" for c in channels)
        if truth:
            cells += f"<td>{100 * entry['share_error']:.1f} pts</td>"
        rows.append(f"<tr><td>{html.escape(MODEL_NAMES.get(name, label(name)))}</td>{cells}</tr>")
    return f"<table><tr><th>model</th>{head}</tr>{''.join(rows)}</table>"


def _sequence_note(report: dict[str, Any]) -> str:
    sequence = report["comparison"].get("sequence")
    if not sequence:
        return ""
    return (
        f"<p>The sequence model predicts, on {sequence['held_out_journeys']:,} journeys it did "
        f"not train on, whether a customer converts before their next touch with an AUC of "
        f"{sequence['touch_auc']:.2f} (0.50 is chance). Its credit, taken from what it predicts "
        "with each channel's touches removed, needs many journeys: on 100,000 simulated ones "
        "it came as close to the truth as the incremental model, on a few thousand it does "
        "not (measured in the project's attribution benchmark).</p>"
    )


def render_attribution_page(report: dict[str, Any], json_name: str) -> str:
    """The page; ``json_name``: the file beside it that holds every number."""
    counts = report["input"]
    title = "What each channel earned"
    model = MODEL_NAMES.get(report["model"], label(report["model"]))
    headlines = "".join(_headline(c, row) for c, row in report["channels"].items())
    chart = figure_html("Conversions credited per channel", _credit_figure(report["channels"]))
    left_out = (
        f"{counts['unknown_channel']:,} of unknown channels, {counts['after_conversion']:,} at "
        f"or after the customer's conversion and {counts['duplicates']:,} repeated"
    )
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>{STYLE} {TABLE_STYLE}</style>
</head><body>
<h1>{title}</h1>
<p>{counts["touches_read"]:,} touches and {counts["conversions"]:,} conversions read;
{left_out} were left out. {counts["organic_conversions"]:,} conversions had no touch before
them. Credit by the {html.escape(model.lower())} model; the average conversion is worth
${report["mean_conversion_value"]:,.2f}. Made {datetime.now(UTC):%Y-%m-%d %H:%M} UTC; every
number is in <a href="{html.escape(json_name)}">{html.escape(json_name)}</a>.</p>
<h2>What each channel earned</h2>
<ul>{headlines}</ul>
{chart}
<h2>A budget split</h2>
<p>Channels that earned more than they cost, in proportion to what each earned per dollar: a
first rule from average returns, not a forecast of what more spend would bring.</p>
<table><tr><th>channel</th><th>share of the budget</th></tr>{_split_rows(report["budget_split"])}
</table>
<h2>Which model to trust</h2>
<p>Each model's share of the credit per channel, on the same journeys.</p>
{_comparison_table(report)}
{_sequence_note(report)}
<p>{_TRUST}</p>
</body></html>
"""
