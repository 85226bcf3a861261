"""`nba data validate | import`: exit codes, one-line errors, and all-or-nothing imports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ingest import importer
from ingest.importer import CURRENT, import_project, imported_manifest
from ingest.project import load_project
from policies.errors import SchemaError
from tests.ingest.test_validate import CUSTOMERS, _project


def _nba(*argv: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "nba", *map(str, argv)],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )


def test_validate_prints_each_file_and_exits_2_on_a_rejected_row(tmp_path: Path) -> None:
    project = _project(tmp_path, customers=CUSTOMERS.replace(",3,", ",three,"))
    result = _nba("data", "validate", "--project", project)
    assert result.returncode == 2, result
    assert result.stdout.splitlines() == [
        "customers.csv (customers): 3 rows read, 1 rejected",
        "  customers.csv:2:seats: not a number: 'three'",
        "transactions.csv (transactions): 2 rows read, 0 rejected",
        "events.csv (events): 2 rows read, 0 rejected",
        "campaign.csv (experiments): 3 rows read, 0 rejected",
    ]


def test_a_bad_project_file_is_one_line_and_exit_2(tmp_path: Path) -> None:
    result = _nba("data", "validate", "--project", tmp_path / "missing.yaml")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        f"nba: error: project file {tmp_path / 'missing.yaml'}: cannot be read "
        "(No such file or directory)"
    ]


def test_import_writes_every_table_and_switches_current(tmp_path: Path) -> None:
    project = _project(tmp_path)
    out = tmp_path / "imported"
    result = _nba("data", "import", "--project", project, "--out", out)
    assert result.returncode == 0, result
    manifest = imported_manifest(out)
    assert {name: t["rows"] for name, t in manifest["tables"].items()} == {
        "customers": 3,
        "transactions": 2,
        "events": 2,
        "experiments": 3,
    }
    assert manifest["tables"]["transactions"]["time_range"] == [
        "2024-01-02T00:00:00+00:00",
        "2024-02-03T10:00:00+00:00",
    ]
    customers = pd.read_parquet(out / CURRENT / "customers.parquet")
    assert customers["consent_email"].tolist() == [True, False, True]
    # Validation holds text as Arrow-backed strings; an import reads back as plain objects.
    assert customers["plan"].dtype == object
    assert customers["plan"].tolist() == ["pro", "basic", "pro"]


def test_a_rejected_import_leaves_the_previous_one_in_place(tmp_path: Path) -> None:
    out = tmp_path / "imported"
    _, first = import_project(load_project(_project(tmp_path)), out)
    bad = _project(tmp_path, customers=CUSTOMERS.replace(",no", ",perhaps"))
    result = _nba("data", "import", "--project", bad, "--out", out)
    assert result.returncode == 2
    assert result.stderr.startswith("nba: error: nothing imported: customers.csv (customers)")
    assert (out / CURRENT).resolve() == first
    assert [p.name for p in (out / "imports").iterdir()] == [first.name]


def test_an_import_that_fails_while_writing_publishes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "imported"
    _, first = import_project(load_project(_project(tmp_path)), out)
    written: list[str] = []

    def fail_on_the_third_table(frame: pd.DataFrame, path: Path) -> None:
        written.append(Path(path).name)
        if len(written) == 3:
            raise OSError(28, "No space left on device")
        Path(path).write_bytes(b"")

    monkeypatch.setattr(importer, "_write_parquet", fail_on_the_third_table)
    with pytest.raises(OSError, match="No space left"):
        import_project(load_project(_project(tmp_path)), out)
    assert (out / CURRENT).resolve() == first
    assert [p.name for p in (out / "imports").iterdir()] == [first.name]
    assert json.loads((first / "import.json").read_text())["project"] == "tiny"


def test_import_refuses_and_names_what_failed(tmp_path: Path) -> None:
    bad = _project(tmp_path, events="")
    with pytest.raises(SchemaError, match=r"events.csv \(events\): not read"):
        import_project(load_project(bad), tmp_path / "imported")
    assert not (tmp_path / "imported" / CURRENT).exists()


def test_a_passing_validate_is_imported_without_checking_again_unless_a_file_changed(
    tmp_path: Path,
) -> None:
    project_file = _project(tmp_path)
    out = tmp_path / "imported"
    assert _nba("data", "validate", "--project", project_file, "--out", out).returncode == 0
    [staged] = (out / "staged").iterdir()
    reports, folder = import_project(load_project(project_file), out)
    assert not staged.exists() and (out / CURRENT).resolve() == folder.resolve()
    assert [(r.table, r.rows_read, r.rows_rejected) for r in reports][0] == ("customers", 3, 0)
    assert imported_manifest(out)["tables"]["customers"]["rows"] == 3
    # Staged again, then a file changes: the import checks the new bytes, not the staged ones.
    assert _nba("data", "validate", "--project", project_file, "--out", out).returncode == 0
    (tmp_path / "customers.csv").write_text(CUSTOMERS.replace(",3,", ",three,"))
    with pytest.raises(SchemaError, match="1 rejected"):
        import_project(load_project(project_file), out)
    assert (out / CURRENT).resolve() == folder.resolve()
