"""Read one declared source into a frame of contract columns, or say in one line why not.

CSV files are read as text (an empty field is missing; nothing else is guessed), so that a
value that does not parse is reported later with the file's own spelling. A ``utf-8`` source
also accepts a byte-order mark. Every row keeps the number a reader finds it by: the line in a
CSV file with a header (line 1), the row (from 1) in parquet and JSON lines.
"""

from __future__ import annotations

import csv
import difflib
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from ingest.contract import contract_columns
from ingest.project import Project, Source, TableName

__all__ = ["SourceFrame", "UnreadableSource", "read_source"]

_SNIFFED = ",;\t|"
_ARROW_TEXT = pd.StringDtype("pyarrow")


class UnreadableSource(Exception):
    """A file that cannot be read as declared; ``str()`` is the one line to show."""


@dataclass(frozen=True)
class SourceFrame:
    """A table's rows with contract column names; ``line_of`` turns a row index into the
    number a reader finds it by; ``file_columns`` maps a contract column to the file's name."""

    table: TableName
    path: Path
    frame: pd.DataFrame
    first_line: int
    file_columns: dict[str, str]

    def line_of(self, index: int) -> int:
        return index + self.first_line


def _encoding(source: Source) -> str:
    return "utf-8-sig" if source.encoding.lower().replace("_", "-") == "utf-8" else source.encoding


def _bad_bytes_line(path: Path, encoding: str) -> str:
    """Where the first undecodable byte sits (only called once decoding has failed)."""
    with path.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                raw.decode(encoding)
            except UnicodeDecodeError as exc:
                byte = raw[exc.start : exc.start + 1].hex()
                return f"{path.name}:{number}: not valid {encoding} (byte 0x{byte})"
    return f"{path.name}: not valid {encoding}"


def _ragged_line(path: Path, source: Source, encoding: str) -> str:
    """Where a row has more or fewer fields than the header (only called once pyarrow refused
    the file): the first such line, and how many more there are. The standard library's csv
    reader counts the fields as pyarrow does, quotes included, and knows each record's line."""
    with path.open(newline="", encoding=encoding) as fh:
        rows = csv.reader(fh, delimiter=source.delimiter)
        expected = len(source.names or ()) if not source.header else len(next(rows, []))
        wrong = [(rows.line_num, len(r)) for r in rows if r and len(r) != expected]
    if not wrong:
        return f"{path.name}: not readable as CSV (rows of unequal length)"
    line, found = wrong[0]
    more = f" (and {len(wrong) - 1:,} more such lines)" if len(wrong) > 1 else ""
    return f"{path.name}:{line}: {found} fields where the header has {expected}{more}"


def _arrow_csv(path: Path, source: Source, encoding: str) -> pd.DataFrame:
    """pyarrow's multithreaded CSV reader, every column as Arrow-backed text (twice as fast as
    pandas' C reader here, benchmarks/ingest_speed.py)."""
    read = pacsv.ReadOptions(
        encoding="utf8" if encoding == "utf-8-sig" else encoding,  # arrow skips a UTF-8 BOM
        column_names=list(source.names) if not source.header and source.names else None,
    )
    parse = pacsv.ParseOptions(delimiter=source.delimiter)
    with pacsv.open_csv(path, read_options=read, parse_options=parse) as first_block:
        header = first_block.schema.names  # the streaming reader reads one block only
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        null_values=[""],
    )
    table = pacsv.read_csv(
        path,
        read_options=read,
        parse_options=parse,
        convert_options=convert,
    )
    # Arrow-backed strings: no Python object per value, and pandera's null, uniqueness and
    # membership checks run in Arrow (1M customers + 10M events validated and imported in
    # 25.4 s instead of 62.2 s with object strings, benchmarks/ingest_speed.py).
    frame: pd.DataFrame = table.to_pandas(types_mapper={pa.string(): _ARROW_TEXT}.get)
    return frame


def _read_csv(path: Path, source: Source) -> pd.DataFrame:
    encoding = _encoding(source)
    if source.delimiter != "whitespace" and len(source.delimiter) == 1:
        try:
            return _arrow_csv(path, source, encoding)
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "decode" in str(exc).lower():
                raise UnreadableSource(_bad_bytes_line(path, encoding)) from None
            if "Empty CSV file" in str(exc):
                raise UnreadableSource(f"{path.name}: empty file (no header row)") from None
            if "Expected" in str(exc) and "columns, got" in str(exc):
                raise UnreadableSource(_ragged_line(path, source, encoding)) from None
            raise UnreadableSource(f"{path.name}: not readable as CSV ({exc})") from None
    sep = r"\s+" if source.delimiter == "whitespace" else source.delimiter
    try:
        return pd.read_csv(
            path,
            sep=sep,
            encoding=encoding,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            header=0 if source.header else None,
            names=list(source.names) if source.names else None,
            engine="python",
        )
    except UnicodeDecodeError:
        raise UnreadableSource(_bad_bytes_line(path, encoding)) from None
    except pd.errors.EmptyDataError:
        raise UnreadableSource(f"{path.name}: empty file (no header row)") from None
    except pd.errors.ParserError as exc:
        raise UnreadableSource(f"{path.name}: not readable as CSV ({exc})") from None


def _flattened(frame: pd.DataFrame) -> pd.DataFrame:
    """Nested objects of JSON lines as ``parent.child`` columns (``properties.severity``)."""
    nested = [c for c in frame.columns if frame[c].map(lambda v: isinstance(v, dict)).any()]
    for column in nested:
        records = [v if isinstance(v, dict) else {} for v in frame[column]]
        inner = pd.json_normalize(records)
        frame = frame.drop(columns=column).join(
            inner.add_prefix(f"{column}.").set_index(frame.index)
        )
    return frame


def _read(path: Path, source: Source) -> pd.DataFrame:
    if not path.is_file():
        raise UnreadableSource(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise UnreadableSource(f"{path.name}: empty file (no header row)")
    kind = source.file_format
    try:
        if kind == "parquet":
            return pd.read_parquet(path)
        if kind == "jsonl":
            return _flattened(pd.read_json(path, lines=True, dtype=False, convert_dates=False))
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise UnreadableSource(f"{path.name}: not readable as {kind} ({exc})") from None
    return _read_csv(path, source)


def _delimiter_hint(frame: pd.DataFrame, source: Source) -> str:
    if len(frame.columns) != 1:
        return ""
    header = str(frame.columns[0])
    try:
        found = csv.Sniffer().sniff(header, delimiters=_SNIFFED).delimiter
    except csv.Error:
        return ""
    if found == source.delimiter:
        return ""
    return f"; the header is one column: the file seems to use {found!r}, not {source.delimiter!r}"


def _missing(frame: pd.DataFrame, source: Source, wanted: str, path: Path) -> str:
    close = difflib.get_close_matches(wanted, [str(c) for c in frame.columns], n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else _delimiter_hint(frame, source)
    return f"{path.name}:1:{wanted}: missing column{hint}"


def _recoded(values: pd.Series, mapping: dict[str, str]) -> pd.Series:
    """Values the mapping names replaced; others kept (and later judged by the rules)."""
    return values.map(lambda v: mapping.get(str(v), v))


def read_source(project: Project, table: TableName) -> SourceFrame:
    """The table's rows under contract names, recoded and completed as the project says."""
    source = project.sources[table]
    path = project.path_of(table)
    raw = _read(path, source)
    if raw.empty:
        raise UnreadableSource(f"{path.name}: no data rows")
    columns: dict[str, pd.Series] = {}
    file_columns: dict[str, str] = {}
    for name, spec in contract_columns(project, table).items():
        if name in source.constants:
            columns[name] = pd.Series(source.constants[name], index=raw.index)
        elif name == "customer_id" and source.key_from_row is not None:
            rows = pd.Series(raw.index + 1, index=raw.index).astype(str)
            columns[name] = source.key_from_row + rows
        elif source.file_column(name) in raw.columns:
            file_columns[name] = source.file_column(name)
            columns[name] = raw[source.file_column(name)]
        elif spec.required:
            raise UnreadableSource(_missing(raw, source, source.file_column(name), path))
        else:
            continue
        if name in source.values:
            columns[name] = _recoded(columns[name], source.values[name])
    csv_with_header = source.file_format == "csv" and source.header
    return SourceFrame(
        table=table,
        path=path,
        frame=pd.DataFrame(columns, index=raw.index),
        first_line=2 if csv_with_header else 1,
        file_columns=file_columns,
    )
