"""`nba attribution --page` on simulated journeys, read in a real browser (Debian's chromium
through Playwright): each channel's earnings in words with the JSON's numbers, the chart loads,
the models side by side against the truth, and no raw names or unformatted numbers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nba.cli import app

pytestmark = pytest.mark.browser


def test_the_attribution_page_says_what_each_channel_earned(tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    runner = CliRunner()
    data = tmp_path / "journeys"
    made = runner.invoke(app, ["simulate", "journeys", "--out", str(data), "--customers", "6000"])
    assert made.exit_code == 0, made.output
    numbers, page_file = tmp_path / "attribution.json", tmp_path / "attribution.html"
    argv = ["attribution", "--data", str(data), "--rounds", "5", "--sequence"]
    result = runner.invoke(app, [*argv, "--out", str(numbers), "--page", str(page_file)])
    assert result.exit_code == 0, result.output
    report = json.loads(numbers.read_text())
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by deploy/bootstrap-system.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(page_file.as_uri())
        text = page.inner_text("body")
        chart_width = page.eval_on_selector("img", "img => img.naturalWidth")
        models = page.eval_on_selector_all(
            "table:last-of-type tr td:first-child", "c => c.map(x => x.innerText)"
        )
        page.screenshot(path=str(tmp_path / "attribution.png"), full_page=True)
        browser.close()
    search = report["channels"]["search"]
    assert (
        f"Search: {search['credited_conversions']:,.0f} conversions credited" in text
        and f"for ${search['spend']:,.2f} spent" in text
    )
    assert "Retargeting:" in text and "earned less than it cost" in text
    assert models[:3] == [
        "Truth (simulated)",
        "Incremental (additive hazard)",
        "Markov removal effect",
    ]
    assert "Sequence model (LSTM)" in models and "(0.50 is chance)" in text
    assert chart_width > 0
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", text), "a snake_case name reached the page"
    assert not re.search(r"\d\.\d{5,}", text), "an unformatted number reached the page"
