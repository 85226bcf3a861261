"""The committed JSON Schemas match the message models, and they validate real messages."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from policies.errors import SchemaError
from stream_app.schemas import SCHEMA_DIR, check_schemas, write_schemas


def test_committed_schemas_are_up_to_date() -> None:
    check_schemas()


def test_a_stale_schema_is_reported(tmp_path: Path) -> None:
    write_schemas(tmp_path)
    path = tmp_path / "nba-actions.schema.json"
    path.write_text(path.read_text().replace('"action_id"', '"actionId"', 1))
    with pytest.raises(SchemaError, match="nba-actions.schema.json"):
        check_schemas(tmp_path)


def test_event_schema_names_the_simulated_event_types_and_leaves_the_set_to_the_project() -> None:
    schema = json.loads((SCHEMA_DIR / "engagement-events.schema.json").read_text())
    event_type = schema["properties"]["event_type"]
    assert event_type["pattern"] == "^[a-z][a-z0-9_]*$"
    assert "support_ticket" in event_type["description"]
    assert set(schema["required"]) == {"event_id", "customer_id", "event_type", "occurred_at"}
