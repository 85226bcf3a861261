"""JSON Schemas of the topic messages, generated from the pydantic models into `schemas/`.

`nba schemas write` regenerates them; `nba schemas check` (run by the tests) fails when the
committed files differ from what the models generate.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from policies.errors import SchemaError
from stream_app.messages import DlqRecord, EngagementEvent, NbaAction, Outcome

__all__ = ["SCHEMA_DIR", "TOPIC_MODELS", "check_schemas", "render_schemas", "write_schemas"]

SCHEMA_DIR = Path(__file__).resolve().parents[1] / "schemas"
TOPIC_MODELS: dict[str, type[BaseModel]] = {
    "engagement-events": EngagementEvent,
    "outcomes": Outcome,
    "nba-actions": NbaAction,
    "nba-dlq": DlqRecord,
}


def render_schemas() -> dict[str, str]:
    """File name -> JSON text, one per topic."""
    rendered = {}
    for topic, model in TOPIC_MODELS.items():
        schema = {"$id": f"urn:nba:topic:{topic}", **model.model_json_schema()}
        rendered[f"{topic}.schema.json"] = json.dumps(schema, indent=2, sort_keys=True) + "\n"
    return rendered


def write_schemas(directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in render_schemas().items():
        path = directory / name
        path.write_text(text)
        written.append(path)
    return written


def check_schemas(directory: Path = SCHEMA_DIR) -> None:
    """Raise SchemaError naming the first file that is missing or out of date."""
    for name, text in render_schemas().items():
        path = directory / name
        if not path.exists() or path.read_text() != text:
            raise SchemaError(
                f"{path} is out of date with the message models; run `nba schemas write`"
            )
