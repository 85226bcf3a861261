"""`nba simulate world`: write the simulated world's data sets (parquet, JSON lines) to a folder."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from policies.errors import ConfigError
from simulator.config import WorldConfig
from simulator.datasets import legacy_history, randomized_experiment, transactions
from simulator.events import generate_events
from simulator.project import world_project
from simulator.world import ResponseType, World, build_world

__all__ = ["truth_frame", "write_world"]


def truth_frame(world: World) -> pd.DataFrame:
    """One row per customer: every action's potential outcomes, expectations, cost and type."""
    columns: dict[str, object] = {
        "customer_id": world.customers["customer_id"].to_numpy(),
        "contract_value": world.value,
    }
    names = [t.name.lower() for t in ResponseType]
    for j, action in enumerate(world.actions):
        columns[f"p_retain__{action}"] = world.p_retain[:, j]
        columns[f"expected_expansion__{action}"] = world.expected_expansion[:, j]
        columns[f"retained__{action}"] = world.retained[:, j]
        columns[f"expansion__{action}"] = world.expansion[:, j]
        columns[f"cost__{action}"] = world.cost[:, j]
        if j > 0:
            columns[f"response_type__{action}"] = np.asarray(names)[world.response_type[:, j]]
    return pd.DataFrame(columns)


def _writable(out: Path) -> Path:
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out} cannot be created ({exc.strerror})") from None
    return out


def write_world(config: WorldConfig, out: Path, events_days: float) -> dict[str, int]:
    """Generate and write every data set; returns the row count of each file written."""
    out = _writable(out)
    world = build_world(config)
    frames = {
        "customers": world.customers,
        "truth": truth_frame(world),
        "experiment": randomized_experiment(world),
        "history": legacy_history(world),
        "transactions": transactions(world),
    }
    counts = {}
    for name, frame in frames.items():
        frame.to_parquet(out / f"{name}.parquet", index=False)
        counts[f"{name}.parquet"] = len(frame)
    if events_days > 0:
        events = generate_events(world, days=events_days)
        with (out / "events.jsonl").open("wb") as fh:
            for _, line in events.json_lines():
                fh.write(line + b"\n")
        counts["events.jsonl"] = len(events)
    (out / "nba.yaml").write_text(yaml.safe_dump(world_project(events_days > 0), sort_keys=False))
    (out / "world.json").write_text(
        json.dumps({"config": config.model_dump(mode="json"), "files": counts}, indent=2)
    )
    return counts
