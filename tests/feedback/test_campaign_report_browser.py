"""`nba report --project` on Hillstrom's campaign, read in a real browser (Debian's chromium
through Playwright): the page says what each e-mail did in plain words, its chart loads, and it
shows no raw names or unformatted numbers."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ingest.project import Project
from nba.cli import app

pytestmark = pytest.mark.browser
HILLSTROM = Path(__file__).resolve().parents[2] / "examples/hillstrom/nba.yaml"


def test_the_campaign_page_reads_as_a_marketing_lead_needs_it(
    hillstrom_import: tuple[Project, Path], tmp_path: Path
) -> None:
    from playwright.sync_api import sync_playwright

    _, data = hillstrom_import
    page_file = tmp_path / "campaign.html"
    result = CliRunner().invoke(
        app,
        ["report", "--project", str(HILLSTROM), "--data", str(data), "--out", str(page_file)],
        prog_name="nba",
    )
    assert result.exit_code == 0, result.output
    numbers = json.loads(page_file.with_suffix(".json").read_text())
    assert set(numbers["ate"]) == {"mens_email", "womens_email"}
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is installed by deploy/bootstrap-system.sh"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page()
        page.goto(page_file.as_uri())
        text = page.inner_text("body")
        chart_width = page.eval_on_selector("img", "img => img.naturalWidth")
        page.screenshot(path=str(tmp_path / "campaign.png"), full_page=True)
        browser.close()
    assert "What the Hillstrom campaign did" in text
    # The published arm means (the data set's README): 10.6% without an e-mail, 18.3% with
    # the men's e-mail.
    assert "Mens email raised the visit rate from 10.6% to 18.3%: +7.7 pts" in text
    assert "on 21,307 customers who got it against 21,306 who did not" in text
    assert "better than chance" in text  # the women's e-mail's Qini interval excludes 0
    assert chart_width > 0
    assert not re.search(r"\b[a-z]+_[a-z_]+\b", text), "a snake_case name reached the page"
    assert not re.search(r"\d\.\d{5,}", text), "an unformatted number reached the page"
