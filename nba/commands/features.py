"""`nba features build | apply | materialize | push-test | read`: the feature repository's data."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

from features.definitions import ENGAGEMENT_FIELDS, PROFILE_FIELDS, TIMESTAMP
from features.jobs import activity_windows, clv_table, fit_personas, persona_inputs, rfm_table
from simulator.datasets import transactions
from simulator.events import generate_events
from simulator.world import AS_OF, World

__all__ = ["build_sources"]


_WINDOWS = ("events_1h", "events_24h", "events_7d", "distinct_features_7d")
_SNAPSHOT_ENGAGEMENT = tuple(f for f in ENGAGEMENT_FIELDS if f not in _WINDOWS)


def _stamped(frame: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    return frame.assign(**{TIMESTAMP: pd.Timestamp(as_of)})


def build_sources(world: World, data_dir: Path, as_of: datetime = AS_OF) -> dict[str, int]:
    """Run the batch jobs on a simulated world and write every feature view's parquet source
    (the week of engagement events before ``as_of`` gives the activity windows); returns row
    counts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    snapshot = world.customers
    ids = snapshot["customer_id"].astype(str)
    history = transactions(world)
    recent = generate_events(world, days=7.0, start=as_of - timedelta(days=7))
    personas = fit_personas(snapshot, world.retained[:, 0])
    engagement = pd.concat(
        [
            snapshot[["customer_id", *_SNAPSHOT_ENGAGEMENT]],
            activity_windows(recent, world.n, as_of),
        ],
        axis=1,
    )
    tables = {
        "profile": _stamped(snapshot[["customer_id", *PROFILE_FIELDS]], as_of),
        "engagement": _stamped(engagement, as_of),
        "clv": _stamped(clv_table(history, ids, as_of), as_of),
        "rfm": _stamped(rfm_table(history, ids, as_of), as_of),
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
