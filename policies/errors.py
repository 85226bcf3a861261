"""The project's error hierarchy, in one place.

It lives in ``policies`` because that is the one package every other package may import.
The CLI turns any ``NbaError`` into one clear line and a non-zero exit; anything else is a bug
and keeps its traceback.

    NbaError
    ├── ConfigError          bad settings, catalog or parameters (names the offending field)
    ├── SchemaError          a message or frame that does not match its schema
    ├── InfraError           local infrastructure cannot start, stop or be reached
    ├── ModelManifestError   a model bundle whose manifest does not match what is served
    └── BudgetError          a budget or capacity that cannot be honoured
"""

from __future__ import annotations

from pydantic import ValidationError

__all__ = [
    "first_problem",
    "BudgetError",
    "ConfigError",
    "InfraError",
    "ModelManifestError",
    "NbaError",
    "SchemaError",
]


class NbaError(Exception):
    """Base of every error the project raises on purpose; its message is shown to the user."""


class ConfigError(NbaError, ValueError):
    """Settings, catalog or parameters that cannot be used; the message names the field."""


class SchemaError(NbaError, ValueError):
    """A message or frame that does not match its schema."""


class InfraError(NbaError, RuntimeError):
    """Local infrastructure (broker, Redis, Prometheus) that cannot start, stop or be reached."""


class ModelManifestError(NbaError, ValueError):
    """A model bundle whose manifest does not match the features or actions being served."""


class BudgetError(NbaError, ValueError):
    """A budget or capacity that cannot be honoured (negative, or exhausted where it must hold)."""


def first_problem(exc: ValidationError, default: str) -> tuple[str, str, str]:
    """(dotted location, message, error type) of a validation error's first problem."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or default
    return where, first["msg"], first["type"]
