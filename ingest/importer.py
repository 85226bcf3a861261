"""Import a validated project: all tables or nothing.

Layout of the target folder::

    <out>/imports/<UTC stamp>-<hash>/   one parquet file per table + import.json
    <out>/current -> imports/<...>      a symlink, replaced atomically (rename(2))

Each import is written into its own new folder and published by swapping the ``current`` link
in one rename, so a reader of ``<out>/current`` sees the previous import or the new one, never a
half-written mix; an import that fails leaves ``current`` as it was. ``import.json`` records
the project, each table's rows and time range (materialization uses the data's own range) and
the SHA-256 of every source file.

A passing ``nba data validate`` stages what it checked (``stage_project``):

    <out>/staged/<key>/                 the typed tables and their import.json

where the key is the SHA-256 of the project file's content and of every source file. ``nba data
import`` of the same project and the same bytes then publishes the staged folder (one rename)
instead of validating again; any change to a file or to the project gives another key, so a
staged folder can never stand for data it did not check.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as arrow
import pyarrow.parquet as parquet

from ingest.contract import TIME_COLUMNS
from ingest.project import Project
from ingest.validate import TableReport, ValidatedTable, validate_project
from policies.errors import ConfigError, SchemaError

__all__ = ["CURRENT", "import_project", "imported_manifest", "imported_table", "stage_project"]

CURRENT = "current"
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(
    project: Project, tables: list[ValidatedTable], sources: dict[str, str]
) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for item in tables:
        entry: dict[str, Any] = {"rows": len(item.frame), "file": f"{item.table}.parquet"}
        time_column = TIME_COLUMNS.get(item.table)
        if time_column is not None:
            times = item.frame[time_column]
            entry["time_range"] = [times.min().isoformat(), times.max().isoformat()]
        entry["source"] = {"path": str(project.path_of(item.table)), "sha256": sources[item.table]}
        described[item.table] = entry
    return {
        "project": project.name,
        "imported_at": datetime.now(UTC).isoformat(),
        "tables": described,
    }


def _writable(out: Path) -> Path:
    try:
        (out / "imports").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"--out {out} cannot be created ({exc.strerror})") from None
    return out


def _publish(out: Path, folder: Path) -> None:
    """Point ``out/current`` at ``folder`` in one rename."""
    link = out / f".{CURRENT}.{os.getpid()}"
    link.unlink(missing_ok=True)
    link.symlink_to(folder.relative_to(out))
    os.replace(link, out / CURRENT)


def _sources(project: Project) -> dict[str, str]:
    """Each declared table's source file SHA-256 (a file read for two tables is hashed once)."""
    digests: dict[Path, str] = {}
    for table in project.sources:
        path = project.path_of(table)
        if path not in digests:
            digests[path] = _sha256(path)
    return {table: digests[project.path_of(table)] for table in project.sources}


def _stage_key(project: Project, sources: dict[str, str]) -> str:
    declared = project.model_dump_json(exclude={"root"})
    payload = json.dumps({"project": declared, "sources": sources}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _write_parquet(frame: pd.DataFrame, path: Path) -> None:
    """``frame`` as parquet whose text columns read back as pandas' plain object strings, as
    every reader of an import expects: validation holds them as Arrow-backed strings, and
    pandas would otherwise restore that dtype from the file's metadata."""
    table = arrow.Table.from_pandas(frame.reset_index(drop=True), preserve_index=False)
    described = json.loads(table.schema.metadata[b"pandas"])
    for column in described["columns"]:
        if column["numpy_type"] == "string":
            column["numpy_type"] = "object"
    metadata = {**table.schema.metadata, b"pandas": json.dumps(described).encode()}
    parquet.write_table(table.replace_schema_metadata(metadata), path)


def _write(folder: Path, tables: list[ValidatedTable], manifest: dict[str, Any]) -> Path:
    """``folder`` with every table and the manifest, or nothing (written beside, renamed)."""
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        for item in tables:
            _write_parquet(item.frame, partial / f"{item.table}.parquet")
        (partial / "import.json").write_text(json.dumps(manifest, indent=2))
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return folder


def _refuse(reports: list[TableReport]) -> None:
    if not all(report.ok for report in reports):
        raise SchemaError(
            "nothing imported: "
            + "; ".join(r.summary() for r in reports if not r.ok)
            + " (`nba data validate` lists the problems)"
        )


def stage_project(project: Project, out: Path, tables: list[ValidatedTable]) -> Path:
    """Keep the tables of a passing validation for ``import_project`` (see the module's doc)."""
    sources = _sources(project)
    staged = _writable(out) / "staged" / _stage_key(project, sources)
    if staged.exists():
        return staged
    staged.parent.mkdir(exist_ok=True)
    for older in staged.parent.iterdir():  # one staged validation at a time: they are copies
        shutil.rmtree(older, ignore_errors=True)
    return _write(staged, tables, _manifest(project, tables, sources))


def import_project(project: Project, out: Path) -> tuple[list[TableReport], Path]:
    """Validate (or take what ``nba data validate`` staged for these very bytes), then write
    every table; raises SchemaError (nothing published) when any row was rejected. Returns the
    reports and the published folder."""
    sources = _sources(project)
    staged = out / "staged" / _stage_key(project, sources)
    if (staged / "import.json").exists():
        manifest = json.loads((staged / "import.json").read_text())
        reports = [
            TableReport(table, Path(entry["source"]["path"]).name, entry["rows"])
            for table, entry in manifest["tables"].items()
        ]
        return reports, _publish_new(out, manifest, lambda folder: staged.rename(folder))
    reports, tables = validate_project(project)
    _refuse(reports)
    manifest = _manifest(project, tables, sources)
    return reports, _publish_new(out, manifest, lambda folder: _write(folder, tables, manifest))


def _publish_new(out: Path, manifest: dict[str, Any], fill: Callable[[Path], object]) -> Path:
    """A new folder under ``out/imports`` filled by ``fill``, its import time stamped, then
    published as ``out/current``."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256(json.dumps(manifest["tables"], sort_keys=True).encode()).hexdigest()
    folder = _writable(out) / "imports" / f"{stamp}-{digest[:8]}"
    fill(folder)
    stamped = {**manifest, "imported_at": datetime.now(UTC).isoformat()}
    (folder / "import.json").write_text(json.dumps(stamped, indent=2))
    _publish(out, folder)
    return folder


def _folder(data: Path) -> Path:
    return data / CURRENT if (data / CURRENT).exists() else data


def imported_table(data: Path, table: str) -> pd.DataFrame:
    """One table of an import (``data``: the import folder, or the folder holding ``current``)."""
    path = _folder(data) / f"{table}.parquet"
    if not path.is_file():
        raise ConfigError(f"{path} not found: `nba data import` a project with {table} first")
    return pd.read_parquet(path)


def imported_manifest(data: Path) -> dict[str, Any]:
    """The manifest of ``data`` (an import folder, or a target folder with ``current``)."""
    try:
        loaded: dict[str, Any] = json.loads((_folder(data) / "import.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{data}: not an imported data folder ({exc})") from None
    return loaded
