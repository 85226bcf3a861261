"""Validate a project's sources against the contract: per file, rows read and rejected, and the
first problems as ``file:line:column: reason``.

A table is read (``ingest.read``), typed and checked (``ingest.contract``, both passes by
pandera). Rows whose values do not parse are rejected in the first pass; the rules run on the
rest, so one run reports both kinds. The customers table goes first: the other tables'
customer ids must come from it when it is declared.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd
import pandera.pandas as pa

from ingest.contract import (
    BOOLEAN_SPELLINGS,
    contract_columns,
    fast_typed,
    rules_schema,
    typing_schema,
)
from ingest.project import Project, TableName
from ingest.read import SourceFrame, UnreadableSource, read_source

__all__ = ["TABLE_ORDER", "TableReport", "ValidatedTable", "validate_project"]

TABLE_ORDER: tuple[TableName, ...] = (
    "customers",
    "transactions",
    "events",
    "experiments",
    "touches",
    "conversions",
)
SHOWN_PROBLEMS = 10  # per file: the first problems in full, the rest counted


@dataclass
class TableReport:
    """What validating one table found."""

    table: TableName
    file: str
    rows_read: int = 0
    rows_rejected: int = 0
    problems: list[str] = field(default_factory=list)
    problem_count: int = 0
    unreadable: bool = False

    @property
    def ok(self) -> bool:
        return not self.unreadable and self.rows_rejected == 0

    def summary(self) -> str:
        if self.unreadable:
            return f"{self.file} ({self.table}): not read"
        return (
            f"{self.file} ({self.table}): {self.rows_read:,} rows read, "
            f"{self.rows_rejected:,} rejected"
        )


@dataclass(frozen=True)
class ValidatedTable:
    """A table that passed, typed under contract names (booleans as bool)."""

    table: TableName
    frame: pd.DataFrame


def _reason(check: str, value: object) -> str:
    if check.startswith("coerce_dtype('datetime"):
        return f"not a time in the declared format: {value!r}"
    if check.startswith("coerce_dtype"):
        return f"not a number: {value!r}"
    if check == "field_uniqueness":
        return f"duplicate key {value!r}"
    if check == "not_nullable":
        return "missing value"
    return f"{check}: {value!r}"


def _problems(source: SourceFrame, cases: pd.DataFrame) -> list[tuple[int, str]]:
    """(row index, line) per failed cell."""
    lines: list[tuple[int, str]] = []
    rows = zip(cases["index"], cases["column"], cases["check"], cases["failure_case"], strict=True)
    for index, contract_column, check, value in rows:
        if index is None or pd.isna(index) or str(check).startswith("dtype("):
            continue  # a dtype summary without a row: its cells are reported one by one
        column = source.file_columns.get(str(contract_column), str(contract_column))
        line = source.line_of(int(index))
        text = f"{source.path.name}:{line}:{column}: {_reason(str(check), value)}"
        lines.append((int(index), text))
    return lines


def _checked(
    schema: pa.DataFrameSchema,
    frame: pd.DataFrame,
    source: SourceFrame,
    problems: list[tuple[int, str]],
) -> pd.DataFrame:
    """The frame after ``schema``, without the rows it rejected (their problems added)."""
    try:
        return schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as exc:
        found = _problems(source, exc.failure_cases)
        problems.extend(found)
        rest = frame.drop(index=sorted({index for index, _ in found}))
        return schema.validate(rest, lazy=False) if len(rest) else rest


def _validate_table(
    project: Project, table: TableName, customers: pd.Series | None
) -> tuple[TableReport, SourceFrame | None, pd.DataFrame | None]:
    report = TableReport(table, project.path_of(table).name)
    try:
        source = read_source(project, table)
    except UnreadableSource as exc:
        report.unreadable = True
        report.problems.append(str(exc))
        report.problem_count = 1
        return report, None, None
    report.rows_read = len(source.frame)
    problems: list[tuple[int, str]] = []
    frame = fast_typed(project, table, source.frame)
    typed = _checked(typing_schema(project, table), frame, source, problems)
    checked = _checked(rules_schema(project, table, customers), typed, source, problems)
    problems.sort()
    report.rows_rejected = len({index for index, _ in problems})
    report.problem_count = len(problems)
    report.problems = [text for _, text in problems[:SHOWN_PROBLEMS]]
    for name, spec in contract_columns(project, table).items():
        if spec.kind == "boolean" and name in checked:
            spelled = checked[name].astype(str).str.strip().str.lower()
            checked[name] = spelled.map(BOOLEAN_SPELLINGS).astype("boolean")
    return report, source, checked


def validate_project(project: Project) -> tuple[list[TableReport], list[ValidatedTable]]:
    """Every declared table's report, and the typed tables (complete only when all passed)."""
    reports: list[TableReport] = []
    tables: list[ValidatedTable] = []
    customers: pd.Series | None = None
    for table in TABLE_ORDER:
        if table not in project.sources:
            continue
        report, source, frame = _validate_table(project, table, customers)
        reports.append(report)
        if frame is not None:
            tables.append(ValidatedTable(table, frame))
        if source is not None and table == "customers":
            # Every id read, rejected rows' too: a customer row's own problem is reported once,
            # not again at each of their transactions.
            customers = source.frame["customer_id"]
    return reports, tables
