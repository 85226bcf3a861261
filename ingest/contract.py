"""The data contract as pandera schemas, built from a project file.

Six tables, each keyed by ``customer_id`` (a string):

- customers: customer_id, the declared features, consent columns, the value column; one row
  per customer;
- transactions: customer_id, occurred_at, amount; amount >= 0, time not in the future;
- events: event_id, customer_id, event_type, occurred_at, declared properties; event_id unique,
  type declared;
- experiments: customer_id, action, assigned_at, propensity, the outcome columns; one row per
  customer, action in the catalog, propensity in (0, 1], binary outcomes 0/1;
- touches (journeys, for attribution): customer_id, touched_at, channel, campaign, cost;
  cost >= 0 (0 for unpaid touches such as site visits), time not in the future;
- conversions: customer_id, converted_at, value; value >= 0, time not in the future.

Each table is checked in two passes, both by pandera: ``typing_schema`` parses every column into
its type (a value that does not parse is reported as such, with the file's own text), then
``rules_schema`` checks the typed frame. Times without a zone are taken as UTC.
docs/data-contract.md is the reader's version of this module.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pandas as pd
import pandera.pandas as pa
import pyarrow as arrow
import pyarrow.compute as arrow_compute
from pandera.engines import pandas_engine

from ingest.project import FeatureKind, Project, TableName

__all__ = [
    "BOOLEAN_SPELLINGS",
    "ColumnSpec",
    "TIME_COLUMNS",
    "contract_columns",
    "fast_typed",
    "rules_schema",
    "typing_schema",
]

BOOLEAN_SPELLINGS = {
    "1": True,
    "true": True,
    "yes": True,
    "y": True,
    "t": True,
    "0": False,
    "false": False,
    "no": False,
    "n": False,
    "f": False,
}
TIME_COLUMNS = {
    "transactions": "occurred_at",
    "events": "occurred_at",
    "experiments": "assigned_at",
    "touches": "touched_at",
    "conversions": "converted_at",
}
_KEYS = {"customers": ("customer_id",), "events": ("event_id",), "experiments": ("customer_id",)}


def _time(project: Project, table: TableName, column: str) -> Any:
    fmt = project.sources[table].date_formats.get(column, "ISO8601")
    # pandera's DateTime is a dataclass its stubs do not show the fields of.
    return pandas_engine.DateTime(  # type: ignore[call-arg]
        to_datetime_kwargs={"format": fmt, "utc": True}, tz="UTC"
    )


@dataclass(frozen=True)
class ColumnSpec:
    """A contract column: its kind (id, text, number, amount, boolean, time, binary,
    probability), whether a row may leave it empty, and whether the file must have it."""

    kind: str
    nullable: bool = False
    required: bool = True


def contract_columns(project: Project, table: TableName) -> dict[str, ColumnSpec]:
    """The table's contract columns, in order."""
    if table == "customers":
        kinds = {FeatureKind.NUMERIC: "number", FeatureKind.CATEGORICAL: "text"}
        columns = {"customer_id": ColumnSpec("id")}
        # A feature may be unknown for a customer (the models take missing values); consent
        # and value may not: consent is never assumed.
        columns |= {
            f.name: ColumnSpec(kinds.get(f.kind, "boolean"), nullable=True)
            for f in project.features
        }
        columns |= {column: ColumnSpec("boolean") for column in project.consent.values()}
        if project.do_not_disturb:  # absent means not flagged
            columns[project.do_not_disturb] = ColumnSpec("boolean", nullable=True)
        if project.value.column:
            columns[project.value.column] = ColumnSpec("amount")
        return columns
    if table == "transactions":
        return {
            "customer_id": ColumnSpec("id"),
            "occurred_at": ColumnSpec("time"),
            "amount": ColumnSpec("amount"),
        }
    if table == "touches":
        return {
            "customer_id": ColumnSpec("id"),
            "touched_at": ColumnSpec("time"),
            "channel": ColumnSpec("text"),
            "campaign": ColumnSpec("text", nullable=True, required=False),
            "cost": ColumnSpec("amount"),
        }
    if table == "conversions":
        return {
            "customer_id": ColumnSpec("id"),
            "converted_at": ColumnSpec("time"),
            "value": ColumnSpec("amount"),
        }
    if table == "events":
        columns = {
            "event_id": ColumnSpec("id"),
            "customer_id": ColumnSpec("id"),
            "event_type": ColumnSpec("text"),
            "occurred_at": ColumnSpec("time"),
        }
        property_kinds = {"numeric": "number", "categorical": "text"}
        return columns | {
            name: ColumnSpec(property_kinds[k], nullable=True, required=False)
            for name, k in project.declared_events().properties.items()
        }
    columns = {
        "customer_id": ColumnSpec("id"),
        "action": ColumnSpec("text"),
        "assigned_at": ColumnSpec("time"),
        # Unknown propensities are allowed: training then says what it assumes.
        "propensity": ColumnSpec("probability", nullable=True, required=False),
    }
    outcomes = {"binary": "binary", "continuous": "amount"}
    return columns | {
        name: ColumnSpec(outcomes[k]) for name, k in project.declared_outcome().columns.items()
    }


def _typed_column(project: Project, table: TableName, name: str, spec: ColumnSpec) -> pa.Column:
    if spec.kind == "time":
        dtype: Any = _time(project, table, name)
    elif spec.kind in ("number", "amount", "binary", "probability"):
        dtype = float
    else:
        dtype = None  # ids, text and booleans stay as read; booleans are checked by spelling
    return pa.Column(dtype, coerce=dtype is not None, nullable=True, required=spec.required)


def typing_schema(project: Project, table: TableName) -> pa.DataFrameSchema:
    """Parse each column into its type; nothing else is checked yet."""
    columns = contract_columns(project, table)
    return pa.DataFrameSchema(
        {name: _typed_column(project, table, name, spec) for name, spec in columns.items()},
        name=table,
    )


def _rules(project: Project, table: TableName, name: str, kind: str) -> list[pa.Check]:
    checks = {
        "amount": [pa.Check.ge(0, error="must be >= 0")],
        "binary": [pa.Check.isin([0.0, 1.0], error="must be 0 or 1")],
        "probability": [pa.Check.in_range(0, 1, include_min=False, error="must lie in (0, 1]")],
        "boolean": [
            pa.Check(
                lambda s: s.astype(str).str.strip().str.lower().isin(BOOLEAN_SPELLINGS),
                element_wise=False,
                error=f"must be one of {', '.join(sorted(BOOLEAN_SPELLINGS))}",
            )
        ],
        "time": [
            pa.Check.le(pd.Timestamp(datetime.now(UTC)), error="lies in the future"),
        ],
    }.get(kind, [])
    if table == "events" and name == "event_type":
        known = list(project.declared_events().types)
        checks.append(pa.Check.isin(known, error=f"unknown event type (declared: {known})"))
    if table == "experiments" and name == "action":
        known = list(project.action_names)
        checks.append(pa.Check.isin(known, error=f"unknown action (the catalog has {known})"))
    return checks


def rules_schema(
    project: Project, table: TableName, customers: pd.Series | None = None
) -> pa.DataFrameSchema:
    """Every rule of the table on its typed frame; ``customers``, when given, are the ids the
    table's customer_id must come from."""
    columns = contract_columns(project, table)
    keys = _KEYS.get(table, ())
    schema: dict[str, pa.Column] = {}
    for name, spec in columns.items():
        checks = _rules(project, table, name, spec.kind)
        if name == "customer_id" and customers is not None and table != "customers":
            checks.append(pa.Check.isin(customers, error="unknown customer (not in customers)"))
        schema[name] = pa.Column(
            nullable=spec.nullable,
            required=spec.required,
            unique=name in keys,
            report_duplicates="exclude_first",
            checks=checks,
        )
    return pa.DataFrameSchema(schema, name=table)


def _arrow_parsed(values: pd.Series, kind: str, fmt: str | None) -> pd.Series:
    """The column parsed by Arrow's vectorized casts or, when any value does not parse that
    way, as Python objects (pandera's coercion then parses it and reports each bad value; it
    takes a missing value as None, not as pandas' NA)."""
    text = arrow.array(values, type=arrow.string(), from_pandas=True)
    try:
        if kind != "time":
            parsed = text.cast(arrow.float64())
        elif fmt is None:  # ISO 8601 with a zone (Arrow refuses naive times: pandas takes them)
            parsed = text.cast(arrow.timestamp("ns", tz="UTC"))
        else:
            naive = arrow_compute.strptime(text, format=fmt, unit="ns")
            parsed = arrow_compute.assume_timezone(naive, timezone="UTC")
    except (arrow.ArrowInvalid, arrow.ArrowNotImplementedError):
        return pd.Series(text.to_pylist(), index=values.index, dtype=object)
    series: pd.Series = parsed.to_pandas()
    series.index = values.index
    return series


def fast_typed(project: Project, table: TableName, frame: pd.DataFrame) -> pd.DataFrame:
    """Text columns of numbers and times parsed up front where Arrow can (ten times faster than
    pandas' parsers on millions of rows, benchmarks/ingest_speed.py); the typing schema then
    finds them typed and only parses what is left."""
    out = frame.copy(deep=False)  # columns are replaced, never changed in place
    formats = project.sources[table].date_formats
    for name, spec in contract_columns(project, table).items():
        parsable = spec.kind in ("time", "number", "amount", "binary", "probability")
        if parsable and name in out and pd.api.types.is_string_dtype(out[name].dtype):
            out[name] = _arrow_parsed(out[name], spec.kind, formats.get(name))
    return out
