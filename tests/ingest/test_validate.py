"""The data contract on small files: each kind of bad input is one clear line, nothing passes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ingest.project import load_project
from ingest.validate import TableReport, validate_project
from policies.errors import ConfigError

CUSTOMERS = "id,plan,seats,consent_email\nc1,pro,3,yes\nc2,basic,1,no\nc3,pro,,1\n"
TRANSACTIONS = "customer,when,amount\nc1,2024-01-02,10.5\nc2,2024-02-03 10:00,3\n"
EVENTS = (
    "event_id,customer_id,event_type,occurred_at,minutes\n"
    "e1,c1,login,2024-03-01T10:00:00Z,4\n"
    "e2,c2,ticket,2024-03-01T11:00:00Z,\n"
)
CAMPAIGN = (
    "customer_id,arm,assigned_at,renewed,revenue\n"
    "c1,A,2024-01-01,1,100\nc2,control,2024-01-01,0,0\nc3,A,2024-01-01,0,0\n"
)


def _project(folder: Path, **files: str) -> Path:
    """A project over ``files`` (table name -> CSV text) written into ``folder``."""
    sources = {
        "customers": {
            "path": "customers.csv",
            "columns": {"customer_id": "id"},
        },
        "transactions": {
            "path": "transactions.csv",
            "columns": {"customer_id": "customer", "occurred_at": "when"},
        },
        "events": {"path": "events.csv"},
        "experiments": {
            "path": "campaign.csv",
            "columns": {"action": "arm"},
            "values": {"action": {"A": "offer", "control": "do_nothing"}},
        },
    }
    texts = {
        "customers": CUSTOMERS,
        "transactions": TRANSACTIONS,
        "events": EVENTS,
        "experiments": CAMPAIGN,
    }
    for table, text in {**texts, **files}.items():
        (folder / sources[table]["path"]).write_text(text)
    project = {
        "name": "tiny",
        "sources": sources,
        "features": [{"name": "plan", "kind": "categorical"}, {"name": "seats", "kind": "numeric"}],
        "consent": {"email": "consent_email"},
        "events": {
            "types": ["login", "ticket"],
            "triggers": ["ticket"],
            "properties": {"minutes": "numeric"},
        },
        "outcome": {"name": "renewed", "kind": "binary", "also": {"revenue": "continuous"}},
        "catalog": {"actions": [{"name": "offer", "channel": "email", "cost_fixed": 5}]},
    }
    path = folder / "nba.yaml"
    path.write_text(yaml.safe_dump(project))
    return path


def _reports(folder: Path, **files: str) -> dict[str, TableReport]:
    reports, _ = validate_project(load_project(_project(folder, **files)))
    return {r.table: r for r in reports}


def test_a_clean_project_passes_with_types_booleans_and_recoded_actions(tmp_path: Path) -> None:
    reports, tables = validate_project(load_project(_project(tmp_path)))
    assert [r.summary() for r in reports] == [
        "customers.csv (customers): 3 rows read, 0 rejected",
        "transactions.csv (transactions): 2 rows read, 0 rejected",
        "events.csv (events): 2 rows read, 0 rejected",
        "campaign.csv (experiments): 3 rows read, 0 rejected",
    ]
    frames = {t.table: t.frame for t in tables}
    assert frames["customers"]["consent_email"].tolist() == [True, False, True]
    assert frames["customers"]["seats"].isna().tolist() == [False, False, True]
    assert str(frames["transactions"]["occurred_at"].dtype) == "datetime64[ns, UTC]"
    assert frames["experiments"]["action"].tolist() == ["offer", "do_nothing", "offer"]


@pytest.mark.parametrize(
    ("table", "text", "expected"),
    [
        (
            "customers",
            CUSTOMERS.replace(",", ";"),
            "customers.csv:1:id: missing column; the header is one column: "
            "the file seems to use ';', not ','",
        ),
        (
            "customers",
            CUSTOMERS.replace("plan", "plna"),
            "customers.csv:1:plan: missing column (did you mean 'plna'?)",
        ),
        ("customers", CUSTOMERS.replace(",3,", ",three,"), "customers.csv:2:seats: not a number"),
        ("customers", CUSTOMERS.replace("c2,", "c1,"), "customers.csv:3:id: duplicate key 'c1'"),
        ("customers", CUSTOMERS.replace(",no", ",maybe"), "customers.csv:3:consent_email: must be"),
        ("customers", CUSTOMERS.replace(",no", ","), "customers.csv:3:consent_email: missing"),
        (
            "transactions",
            TRANSACTIONS.replace("2024-01-02", "2024-13-45"),
            "transactions.csv:2:when: not a time in the declared format: '2024-13-45'",
        ),
        (
            "transactions",
            TRANSACTIONS.replace("2024-01-02", "2199-01-02"),
            "transactions.csv:2:when: lies in the future",
        ),
        (
            "transactions",
            TRANSACTIONS.replace(",3\n", ",-3\n"),
            "transactions.csv:3:amount: must be >= 0",
        ),
        (
            "transactions",
            TRANSACTIONS.replace("c2,", "c9,"),
            "transactions.csv:3:customer: unknown customer",
        ),
        ("events", EVENTS.replace("ticket", "tikcet"), "events.csv:3:event_type: unknown event"),
        ("events", EVENTS.replace("e2,", "e1,"), "events.csv:3:event_id: duplicate key 'e1'"),
        ("experiments", CAMPAIGN.replace(",1,100", ",2,100"), "campaign.csv:2:renewed: must be 0"),
        ("experiments", CAMPAIGN.replace("c3,A", "c3,B"), "campaign.csv:4:arm: unknown action"),
        ("customers", "", "customers.csv: empty file (no header row)"),
        ("customers", "id,plan,seats,consent_email\n", "customers.csv: no data rows"),
        (
            "customers",
            CUSTOMERS.replace("c2,basic,1,no", "c2,basic,1,no,extra"),
            "customers.csv:3: 5 fields where the header has 4",
        ),
    ],
    ids=[
        "wrong-delimiter",
        "misspelt-column",
        "wrong-type",
        "duplicate-key",
        "bad-boolean",
        "missing-consent",
        "unparseable-time",
        "future-time",
        "negative-amount",
        "unknown-customer",
        "unknown-event-type",
        "duplicate-event",
        "outcome-not-binary",
        "unknown-action",
        "empty-file",
        "header-only",
        "ragged-row",
    ],
)
def test_each_kind_of_bad_input_is_named_by_file_line_and_column(
    tmp_path: Path, table: str, text: str, expected: str
) -> None:
    report = _reports(tmp_path, **{table: text})[table]
    assert not report.ok
    assert report.problems[0].startswith(expected), report.problems


def test_bytes_that_are_not_utf8_name_their_line(tmp_path: Path) -> None:
    project = _project(tmp_path)
    (tmp_path / "customers.csv").write_bytes(CUSTOMERS.encode().replace(b"basic", b"b\xe4sic"))
    reports, _ = validate_project(load_project(project))
    assert reports[0].problems == ["customers.csv:3: not valid utf-8-sig (byte 0xe4)"]


def test_rejected_rows_are_counted_and_the_rest_still_checked(tmp_path: Path) -> None:
    text = CUSTOMERS + "c4,pro,x,yes\nc1,pro,2,yes\nc5,pro,2,perhaps\n"
    report = _reports(tmp_path, customers=text)["customers"]
    assert report.rows_read == 6
    assert report.rows_rejected == 3
    assert report.problems == [
        "customers.csv:5:seats: not a number: 'x'",
        "customers.csv:6:id: duplicate key 'c1'",
        "customers.csv:7:consent_email: must be one of 0, 1, f, false, n, no, t, true, y, yes: "
        "'perhaps'",
    ]


def test_a_misspelt_key_in_the_project_file_is_one_line_naming_it(tmp_path: Path) -> None:
    path = _project(tmp_path)
    data = yaml.safe_load(path.read_text())
    data["outcome"]["knd"] = data["outcome"].pop("kind")
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"nba.yaml: outcome.kind: Field required"):
        load_project(path)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"opt_outs": {"unsubscribe": ["email"]}}, "unknown event types ['unsubscribe']"),
        ({"opt_outs": {"login": ["fax"]}}, "opt_outs.login.0"),
        ({"consent": {"pigeon": "consent_email"}}, "consent.pigeon"),
        ({"engagement": "plan"}, "engagement 'plan' is not a numeric feature"),
    ],
)
def test_consent_rules_in_the_project_file_name_the_problem(
    tmp_path: Path, change: dict[str, object], needle: str
) -> None:
    path = _project(tmp_path)
    data = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**data, **change}))
    with pytest.raises(ConfigError, match=re.escape(needle)):
        load_project(path)
