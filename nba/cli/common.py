"""What the command modules share: option types, argument checks, writing JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from nba.commands.files import write_output
from policies.errors import ConfigError

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ImportOption",
    "Only",
    "ProjectOption",
    "ValuesOption",
    "read_values",
    "check_alpha",
    "check_not_negative",
    "check_positive",
    "services",
    "write_json",
]

Only = Annotated[str, typer.Option(help="Comma-separated subset of: kafka,redis,prometheus.")]
ProjectOption = Annotated[
    Path | None, typer.Option(help="The project file (YAML); default NBA_PROJECT.")
]
ImportOption = Annotated[
    Path | None, typer.Option(help="The import to read; default NBA_IMPORTED_DATA.")
]
ValuesOption = Annotated[
    Path | None,
    typer.Option(
        "--values",
        help="Per-customer CLV (the parquet `nba features clv` writes), for a project whose "
        "value source is clv.",
    ),
]


def services(only: str) -> list[str]:
    return [name.strip() for name in only.split(",") if name.strip()]


def check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ConfigError("--alpha must lie strictly between 0 and 1")


def check_positive(**values: float) -> None:
    """One clear line naming the first option that is not > 0."""
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be > 0 (got {value:g})")


def check_not_negative(**values: float) -> None:
    for name, value in values.items():
        if value < 0:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 0 (got {value:g})")


def write_json(path: Path, payload: object) -> None:
    write_output(path, lambda out: out.write_text(json.dumps(payload, indent=2, default=str)))
    typer.echo(f"wrote {path}")


def read_values(path: Path | None) -> pd.DataFrame | None:
    """The CLV job's output, or None; an unreadable file is one clear line."""
    if path is None:
        return None
    import pandas as pd

    try:
        frame = pd.read_parquet(path, columns=["customer_id", "clv"])
    except (OSError, ValueError, KeyError) as exc:
        raise ConfigError(f"--values {path}: not the CLV job's parquet ({exc})") from None
    return frame
