"""`nba features build | apply | materialize | push-test | read`: the feature repository's data."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from features.definitions import ENGAGEMENT_FIELDS, PROFILE_FIELDS, TIMESTAMP
from features.jobs import clv_table, fit_personas, persona_inputs, rfm_table

__all__ = ["build_sources"]


def _stamped(frame: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    return frame.assign(**{TIMESTAMP: pd.Timestamp(as_of)})


def build_sources(
    snapshot: pd.DataFrame,
    transactions: pd.DataFrame,
    data_dir: Path,
    as_of: datetime,
    retained: np.ndarray | None = None,
) -> dict[str, int]:
    """Run the batch jobs and write every feature view's parquet source; returns row counts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    ids = snapshot["customer_id"].astype(str)
    personas = fit_personas(snapshot, retained)
    tables = {
        "profile": _stamped(snapshot[["customer_id", *PROFILE_FIELDS]], as_of),
        "engagement": _stamped(snapshot[["customer_id", *ENGAGEMENT_FIELDS]], as_of),
        "clv": _stamped(clv_table(transactions, ids, as_of), as_of),
        "rfm": _stamped(rfm_table(transactions, ids, as_of), as_of),
        "persona": _stamped(
            pd.DataFrame(
                {"customer_id": ids, "persona": personas.assign(persona_inputs(snapshot))}
            ),
            as_of,
        ),
    }
    counts = {}
    for name, table in tables.items():
        table.to_parquet(data_dir / f"{name}.parquet", index=False)
        counts[f"{name}.parquet"] = len(table)
    (data_dir / "persona_model.json").write_text(json.dumps(asdict(personas), indent=2))
    return counts
