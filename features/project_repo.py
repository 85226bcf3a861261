"""The Feast repository of a project file, and the batch sources it reads, from an import.

Nothing here is specific to a data set: the views follow the project's declarations.

- `profile`: the declared customer features, consent columns and value column
  (`profile.parquet`); always;
- `event_windows`: the declared event features (a push source for the stream, with
  `event_windows.parquet` as its batch copy); when events and event features are declared;
- `clv`: clv_12m, expected_purchases_12m, p_alive (`clv.parquet`); when transactions are imported;
- `persona`: the persona (`persona.parquet`); when personas are declared.

Every source row carries the import's as-of time (``event_timestamp``): the latest time found in
the imported tables, else the import's own time. ``materialize_window`` spans the imported data
(its earliest time to a day past the as-of), not a fixed date.
`nba_scoring` is the FeatureService over all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from feast import Entity, FeatureService, FeatureView, Field, FileSource, PushSource, ValueType
from feast.types import Bool, Float64, String

from features.definitions import TIMESTAMP, Definitions
from features.event_features import event_features
from features.jobs import clv_table
from features.personas import persona_report
from ingest.importer import imported_manifest, imported_table
from ingest.project import FeatureKind, Project

__all__ = [
    "ImportWindow",
    "build_project_sources",
    "import_window",
    "materialize_window",
    "project_definitions",
    "scoring_frame",
]

_KINDS = {FeatureKind.NUMERIC: Float64, FeatureKind.CATEGORICAL: String, FeatureKind.BOOLEAN: Bool}
_CLV_FIELDS = {"clv_12m": Float64, "expected_purchases_12m": Float64, "p_alive": Float64}
_TTL = timedelta(days=400)


@dataclass(frozen=True)
class ImportWindow:
    """The imported data's time span: its earliest time and its as-of time."""

    start: datetime
    as_of: datetime


def import_window(data: Path) -> ImportWindow:
    manifest = imported_manifest(data)
    ranges = [t["time_range"] for t in manifest["tables"].values() if "time_range" in t]
    if not ranges:
        at = datetime.fromisoformat(manifest["imported_at"])
        return ImportWindow(at, at)
    return ImportWindow(
        min(datetime.fromisoformat(r[0]) for r in ranges),
        max(datetime.fromisoformat(r[1]) for r in ranges),
    )


def _profile_fields(project: Project) -> dict[str, Any]:
    fields = {f.name: _KINDS[f.kind] for f in project.features}
    fields |= {column: Bool for column in project.consent.values()}
    if project.do_not_disturb:
        fields[project.do_not_disturb] = Bool
    if project.value.column:
        fields[project.value.column] = Float64
    return fields


def _view(name: str, customer: Entity, fields: dict[str, Any], source: Any) -> FeatureView:
    return FeatureView(
        name=name,
        entities=[customer],
        ttl=_TTL,
        schema=[Field(name=n, dtype=t) for n, t in fields.items()],
        source=source,
    )


def _file(name: str, data_dir: Path) -> FileSource:
    return FileSource(
        name=f"{name}_source",
        path=str((data_dir / f"{name}.parquet").resolve()),
        timestamp_field=TIMESTAMP,
    )


def project_definitions(project: Project, data_dir: Path, tables: set[str]) -> Definitions:
    """The views of ``project`` over the sources in ``data_dir``; ``tables``: what was imported."""
    customer = Entity(name="customer", join_keys=["customer_id"], value_type=ValueType.STRING)
    views = {
        "profile": _view("profile", customer, _profile_fields(project), _file("profile", data_dir))
    }
    push_source = PushSource(
        name="event_windows_push_source", batch_source=_file("event_windows", data_dir)
    )
    if project.event_features and "events" in tables:
        fields = {f.name: Float64 for f in project.event_features}
        views["event_windows"] = _view("event_windows", customer, fields, push_source)
    if "transactions" in tables:
        views["clv"] = _view("clv", customer, _CLV_FIELDS, _file("clv", data_dir))
    if project.personas is not None and "customers" in tables:
        views["persona"] = _view(
            "persona", customer, {"persona": Float64}, _file("persona", data_dir)
        )
    scoring = FeatureService(name="nba_scoring", features=list(views.values()))
    return Definitions(customer, views, push_source, scoring)


def _stamped(frame: pd.DataFrame, as_of: datetime) -> pd.DataFrame:
    return frame.assign(**{TIMESTAMP: pd.Timestamp(as_of)})


def build_project_sources(project: Project, data: Path, data_dir: Path) -> dict[str, int]:
    """Each view's parquet source from the import at ``data``; returns row counts."""
    data_dir.mkdir(parents=True, exist_ok=True)
    as_of = import_window(data).as_of
    tables = set(imported_manifest(data)["tables"])
    customers = imported_table(data, "customers") if "customers" in tables else None
    ids = customers["customer_id"] if customers is not None else None
    out: dict[str, pd.DataFrame] = {}
    if customers is not None:
        columns = ["customer_id", *_profile_fields(project)]
        out["profile"] = _stamped(customers[columns], as_of)
    if project.event_features and "events" in tables:
        events = imported_table(data, "events")
        known = ids if ids is not None else pd.Series(events["customer_id"].unique())
        asked = pd.DataFrame({"customer_id": known.to_numpy(), "at": pd.Timestamp(as_of)})
        windows = event_features(events, asked, project.event_features)
        out["event_windows"] = _stamped(pd.concat([asked[["customer_id"]], windows], axis=1), as_of)
    if "transactions" in tables:
        tx = imported_table(data, "transactions")
        known = ids if ids is not None else pd.Series(tx["customer_id"].unique())
        out["clv"] = _stamped(clv_table(tx, known, as_of), as_of)
    if project.personas is not None and customers is not None:
        labels, _ = persona_report(project, customers)
        persona = pd.DataFrame(
            {"customer_id": customers["customer_id"], "persona": labels.astype(float)}
        )
        out["persona"] = _stamped(persona, as_of)
    for name, frame in out.items():
        frame.to_parquet(data_dir / f"{name}.parquet", index=False)
    return {f"{name}.parquet": len(frame) for name, frame in out.items()}


def scoring_frame(project: Project, data: Path) -> pd.DataFrame:
    """The import's customers with their event features as of the import's end: what batch
    scoring of the whole base reads (`nba score --all`, the API's budget curve)."""
    customers = imported_table(data, "customers").reset_index(drop=True)
    if not project.event_features or "events" not in imported_manifest(data)["tables"]:
        return customers
    as_of = pd.Timestamp(import_window(data).as_of)
    asked = pd.DataFrame({"customer_id": customers["customer_id"].to_numpy(), "at": as_of})
    windows = event_features(imported_table(data, "events"), asked, project.event_features)
    return pd.concat([customers, windows], axis=1)


def materialize_window(data: Path) -> tuple[datetime, datetime]:
    """From the imported data's earliest time to a day past its as-of."""
    window = import_window(data)
    return window.start.astimezone(UTC), window.as_of.astimezone(UTC) + timedelta(days=1)
