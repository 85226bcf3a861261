"""`nba simulate journeys` and `nba attribution`: journeys written as CSV, read back, attributed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from attribution.models import share_error
from attribution.report import attribute
from ingest.importer import CURRENT
from nba.commands.files import write_output
from policies.catalog import load_catalog
from policies.errors import ConfigError
from simulator.journeys import simulate_journeys

__all__ = ["AttributionRequest", "attribute_folder", "write_journeys"]


JOURNEYS_PROJECT = {
    "name": "simulated_journeys",
    "sources": {"touches": {"path": "touches.csv"}, "conversions": {"path": "conversions.csv"}},
}


def write_journeys(out: Path, customers: int, seed: int) -> dict[str, int]:
    """touches.csv, conversions.csv, truth.json (each channel's share of caused conversions)
    and nba.yaml, the project file `nba data validate | import` read them with."""
    journeys = simulate_journeys(customers, seed)
    out.mkdir(parents=True, exist_ok=True)
    journeys.touches.to_csv(out / "touches.csv", index=False)
    journeys.conversions.to_csv(out / "conversions.csv", index=False)
    (out / "truth.json").write_text(json.dumps(journeys.truth, indent=2))
    (out / "nba.yaml").write_text(yaml.safe_dump(JOURNEYS_PROJECT, sort_keys=False))
    return {"touches.csv": len(journeys.touches), "conversions.csv": len(journeys.conversions)}


def _table(data: Path, name: str, times: str) -> pd.DataFrame:
    """A journey table from a folder of files, or from an import (its ``current``)."""
    if (data / CURRENT).is_dir():
        data = data / CURRENT
    for suffix in (".parquet", ".csv"):
        path = data / f"{name}{suffix}"
        if path.is_file():
            break
    else:
        raise ConfigError(f"{data / name}.csv (or .parquet) not found: --data needs {name}")
    try:
        frame = pd.read_parquet(path) if suffix == ".parquet" else pd.read_csv(path)
        frame[times] = pd.to_datetime(frame[times], utc=True, format="ISO8601")
    except KeyError:
        raise ConfigError(f"{path}: no {times!r} column") from None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not readable ({exc})") from None
    return frame


@dataclass(frozen=True)
class AttributionRequest:
    """What `nba attribution` was asked for."""

    data: Path
    model: str
    channels: tuple[str, ...] | None
    rounds: int
    out: Path
    page: Path | None = None
    sequence: bool = False
    catalog: Path | None = None  # a catalog to price from the report ...
    catalog_out: Path | None = None  # ... written here


def _with_truth(report: dict[str, Any], data: Path) -> dict[str, Any]:
    """Simulated journeys come with truth.json: each model's share error against it."""
    path = data / "truth.json"
    if not path.is_file():
        return report
    truth = {str(k): float(v) for k, v in json.loads(path.read_text()).items()}
    for entry in report["comparison"].values():
        entry["share_error"] = round(share_error(entry["shares"], truth), 4)
    return {**report, "truth": truth}


def attribute_folder(request: AttributionRequest) -> dict[str, Any]:
    touches = _table(request.data, "touches", "touched_at")
    conversions = _table(request.data, "conversions", "converted_at")
    report = attribute(
        touches,
        conversions,
        request.model,
        request.channels,
        request.rounds,
        sequence=request.sequence,
    )
    report = _with_truth(report, request.data)
    write_output(request.out, lambda path: path.write_text(json.dumps(report, indent=2)))
    if request.page is not None:
        from feedback.attribution_report import render_attribution_page

        page = render_attribution_page(report, request.out.name)
        write_output(request.page, lambda path: path.write_text(page))
    if request.catalog is not None and request.catalog_out is not None:
        priced = load_catalog(request.catalog).priced(report["channels"])
        text = yaml.safe_dump(priced.model_dump(mode="json"), sort_keys=False)
        write_output(request.catalog_out, lambda path: path.write_text(text))
    return report
