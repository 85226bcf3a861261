"""The runbook names only `nba` commands and options that exist."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import typer

from nba.cli import app

RUNBOOK = Path(__file__).resolve().parents[1] / "docs/runbook.md"


def _resolve(words: list[str]) -> Any:
    # typer may carry its own click: duck-type groups instead of isinstance(click.Group).
    command: Any = typer.main.get_command(app)
    for word in words:
        if not hasattr(command, "get_command"):
            break
        sub = command.get_command(command.context_class(command), word)
        assert sub is not None, f"nba {' '.join(words)}: no command {word!r}"
        command = sub
    return command


def test_every_nba_command_in_the_runbook_exists() -> None:
    spans = re.findall(r"`(nba [^`]+)`", RUNBOOK.read_text())
    assert len(spans) >= 10
    for span in spans:
        words = [w for w in span.split()[1:] if not w.startswith("<")]
        commands = [w for w in words if re.fullmatch(r"[a-z][a-z-]*", w) and not w.startswith("-")]
        command = _resolve(commands[:2])
        options = {opt for param in command.params for opt in getattr(param, "opts", [])}
        for option in (w for w in words if w.startswith("--")):
            assert option in options, f"{span}: {option} is not an option of that command"
