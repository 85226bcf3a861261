"""`nba data validate` + `import` at scale: 1,000,000 customers and 10,000,000 events (CSV).

Baseline in the same run: a plain ``pyarrow.csv.read_csv`` of the same two files (reading and
typing, nothing checked). Target (issue 18): validate + import in under 60 s on this machine.
Measured as an analyst runs them: `nba data validate` (which stages what it checked), then
`nba data import` of the same files (which publishes the staged tables); and, apart, an import
with nothing staged (it validates itself).

    .venv/bin/python -m benchmarks.ingest_speed [--customers N] [--events N]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import yaml

from benchmarks._common import timed, write_result
from ingest.importer import import_project, stage_project
from ingest.project import Project, load_project
from ingest.validate import validate_project

EVENT_TYPES = ("login", "feature_used", "page_view", "support_ticket", "billing_failed")


def _write_files(folder: Path, customers: int, events: int, seed: int) -> Path:
    """Two CSV files and their project file; events written in chunks (bounded memory)."""
    rng = np.random.default_rng(seed)
    ids = pa.array([f"C{i:08d}" for i in range(customers)])
    table = pa.table(
        {
            "customer_id": ids,
            "plan": pa.array(rng.choice(["basic", "pro", "enterprise"], customers)),
            "seats": pa.array(rng.integers(1, 500, customers)),
            "monthly_spend": pa.array(rng.gamma(2.0, 50.0, customers).round(2)),
            "consent_email": pa.array(rng.random(customers) < 0.8),
        }
    )
    pacsv.write_csv(table, folder / "customers.csv")
    start = np.datetime64("2025-01-01T00:00:00", "s")
    chunk = 2_000_000
    with pacsv.CSVWriter(
        folder / "events.csv",
        pa.schema(
            [
                ("event_id", pa.string()),
                ("customer_id", pa.string()),
                ("event_type", pa.string()),
                ("occurred_at", pa.string()),
            ]
        ),
    ) as writer:
        for first in range(0, events, chunk):
            n = min(chunk, events - first)
            owner = rng.integers(0, customers, n)
            seconds = rng.integers(0, 300 * 86_400, n)
            stamps = np.datetime_as_string(start + seconds.astype("timedelta64[s]"), unit="s")
            writer.write_table(
                pa.table(
                    {
                        "event_id": pa.array([f"e{first + i}" for i in range(n)]),
                        "customer_id": ids.take(pa.array(owner)),
                        "event_type": pa.array(np.asarray(EVENT_TYPES)[rng.integers(0, 5, n)]),
                        "occurred_at": pa.array(np.char.add(stamps.astype(str), "Z")),
                    }
                )
            )
    project = {
        "name": "ingest_speed",
        "sources": {"customers": {"path": "customers.csv"}, "events": {"path": "events.csv"}},
        "features": [
            {"name": "plan", "kind": "categorical"},
            {"name": "seats", "kind": "numeric"},
            {"name": "monthly_spend", "kind": "numeric"},
        ],
        "consent": {"email": "consent_email"},
        "events": {"types": list(EVENT_TYPES), "triggers": ["support_ticket"]},
    }
    (folder / "nba.yaml").write_text(yaml.safe_dump(project))
    return folder / "nba.yaml"


def _pyarrow_read(folder: Path) -> int:
    rows = 0
    for name in ("customers.csv", "events.csv"):
        rows += pacsv.read_csv(folder / name).num_rows
    return rows


def _validate_and_stage(project: Project, out: Path) -> tuple[list[Any], list[Any]]:
    """What `nba data validate` does: validate, and stage the tables when all passed."""
    reports, tables = validate_project(project)
    if all(r.ok for r in reports):
        stage_project(project, out, tables)
    return reports, tables


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="nba-ingest-") as tmp:
        folder = Path(tmp)
        project_file, write_s = timed(
            lambda: _write_files(folder, args.customers, args.events, args.seed)
        )
        sizes = {p.name: p.stat().st_size for p in folder.glob("*.csv")}
        rows, baseline_s = timed(lambda: _pyarrow_read(folder))
        project = load_project(project_file)
        out = folder / "imported"
        (reports, tables), validate_s = timed(lambda: _validate_and_stage(project, out))
        del tables
        (_, published), import_s = timed(lambda: import_project(project, out))
        _, cold_import_s = timed(lambda: import_project(project, folder / "cold"))
        imported = {t: len(pd.read_parquet(published / f"{t}.parquet")) for t in ("customers",)}
    results = {
        "files_bytes": sizes,
        "rows": rows,
        "rejected": sum(r.rows_rejected for r in reports),
        "generate_s": round(write_s, 1),
        "pyarrow_read_s": round(baseline_s, 2),
        "validate_s": round(validate_s, 2),
        "import_after_validate_s": round(import_s, 2),
        "validate_then_import_s": round(validate_s + import_s, 2),
        "import_alone_s": round(cold_import_s, 2),
        "validate_vs_pyarrow_read": round(validate_s / baseline_s, 2),
        "import_rows_customers": imported["customers"],
        "target_s": 60,
        "validate_then_import_within_target": validate_s + import_s < 60,
    }
    print(results)
    path = write_result(
        "ingest_speed", {"customers": args.customers, "events": args.events}, results
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
