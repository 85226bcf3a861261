"""Import a validated project: all tables or nothing.

Layout of the target folder::

    <out>/imports/<UTC stamp>-<hash>/   one parquet file per table + import.json
    <out>/current -> imports/<...>      a symlink, replaced atomically (rename(2))

Each import is written into its own new folder and published by swapping the ``current`` link
in one rename, so a reader of ``<out>/current`` sees the previous import or the new one, never a
half-written mix; an import that fails leaves ``current`` as it was. ``import.json`` records
the project, each table's rows and time range (materialization uses the data's own range) and
the SHA-256 of every source file.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from ingest.contract import TIME_COLUMNS
from ingest.project import Project
from ingest.validate import TableReport, ValidatedTable, validate_project
from policies.errors import ConfigError, SchemaError

__all__ = ["CURRENT", "import_project", "imported_manifest", "imported_table"]

CURRENT = "current"
_CHUNK = 1 << 20


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _manifest(project: Project, tables: list[ValidatedTable]) -> dict[str, Any]:
    described: dict[str, Any] = {}
    for item in tables:
        entry: dict[str, Any] = {"rows": len(item.frame), "file": f"{item.table}.parquet"}
        time_column = TIME_COLUMNS.get(item.table)
        if time_column is not None:
            times = item.frame[time_column]
            entry["time_range"] = [times.min().isoformat(), times.max().isoformat()]
        source = project.path_of(item.table)
        entry["source"] = {"path": str(source), "sha256": _sha256(source)}
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


def import_project(project: Project, out: Path) -> tuple[list[TableReport], Path]:
    """Validate, then write every table; raises SchemaError (nothing published) when any row
    was rejected. Returns the reports and the published folder."""
    reports, tables = validate_project(project)
    if not all(report.ok for report in reports):
        raise SchemaError(
            "nothing imported: "
            + "; ".join(r.summary() for r in reports if not r.ok)
            + " (`nba data validate` lists the problems)"
        )
    manifest = _manifest(project, tables)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    digest = hashlib.sha256(json.dumps(manifest["tables"], sort_keys=True).encode()).hexdigest()
    folder = _writable(out) / "imports" / f"{stamp}-{digest[:8]}"
    partial = folder.with_name(folder.name + ".partial")
    partial.mkdir()
    try:
        for item in tables:
            item.frame.reset_index(drop=True).to_parquet(partial / f"{item.table}.parquet")
        (partial / "import.json").write_text(json.dumps(manifest, indent=2))
        partial.rename(folder)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    _publish(out, folder)
    return reports, folder


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
