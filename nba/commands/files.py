"""Writing a command's output file: its folder made, and any OS error one clear line."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from policies.errors import ConfigError

__all__ = ["write_output"]


def write_output(path: Path, write: Callable[[Path], object]) -> Path:
    """``write(path)`` after making its folder; a failure is a ConfigError naming the path."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from None
    return path
