"""The action catalog: what the engine may do, through which channel, at what cost, how often.

Users define their own catalog in YAML (see ``default_catalog.yaml``, which matches the
simulator). ``do_nothing`` is implied: it is always action 0, free and always eligible.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import yaml
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from policies.errors import ConfigError, first_problem
from policies.segments import SEGMENTS

__all__ = ["CHANNELS", "ActionSpec", "Catalog", "Eligibility", "default_catalog", "load_catalog"]

CHANNELS = ("phone", "email", "in_app")
Channel = Literal["phone", "email", "in_app"]
NonNegative = Annotated[float, Field(ge=0.0)]


class Eligibility(BaseModel):
    """Who may receive an action (besides the contact rules, which apply per channel)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    consent_required: bool = True
    min_customer_value: NonNegative = 0.0
    segments: tuple[str, ...] | None = None  # None: every segment

    @model_validator(mode="after")
    def _known_segments(self) -> Eligibility:
        unknown = sorted(set(self.segments or ()) - set(SEGMENTS))
        if unknown:
            raise ValueError(f"unknown segments {unknown}; use {list(SEGMENTS)}")
        return self


class ActionSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    channel: Channel
    cost_fixed: NonNegative = 0.0
    cost_pct_of_value: Annotated[float, Field(ge=0.0, le=1.0)] = 0.0
    capacity_per_period: Annotated[int, Field(ge=0)] | None = None
    moves: Literal["retention", "expansion"] = "retention"
    eligibility: Eligibility = Eligibility()
    # The channel of an attribution report (`nba attribution`) whose cost per touch this
    # action's cost_fixed is taken from (`Catalog.priced`), e.g. "email" or "search".
    attribution_channel: str | None = None

    @model_validator(mode="after")
    def _not_reserved(self) -> ActionSpec:
        if self.name == "do_nothing":
            raise ValueError("do_nothing is implied and cannot be defined")
        return self


class Catalog(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    actions: tuple[ActionSpec, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique(self) -> Catalog:
        names = [a.name for a in self.actions]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"duplicate action names: {duplicates}")
        return self

    @property
    def names(self) -> tuple[str, ...]:
        """All action names, ``do_nothing`` first (column 0 of every per-action array)."""
        return ("do_nothing", *(a.name for a in self.actions))

    def index(self, name: str) -> int:
        try:
            return self.names.index(name)
        except ValueError:
            raise ConfigError(
                f"unknown action {name!r}; the catalog has {', '.join(self.names)}"
            ) from None

    def cost_matrix(self, customer_value: NDArray[np.float64]) -> NDArray[np.float64]:
        """Cost of each action for each customer [customer, action]; do_nothing costs 0."""
        fixed = np.array([0.0, *(a.cost_fixed for a in self.actions)])
        pct = np.array([0.0, *(a.cost_pct_of_value for a in self.actions)])
        return fixed[None, :] + pct[None, :] * customer_value[:, None]

    def priced(self, channels: Mapping[str, Mapping[str, Any]]) -> Catalog:
        """This catalog with each action that names an ``attribution_channel`` costed at that
        channel's cost per touch in an attribution report's ``channels``. Only the cost is
        taken: the policy values an action by its uplift models per customer, which a
        channel's average incremental value would blur and count twice."""
        actions = []
        for action in self.actions:
            channel = action.attribution_channel
            if channel is None:
                actions.append(action)
                continue
            if channel not in channels or channels[channel].get("cost_per_touch") is None:
                raise ConfigError(
                    f"action {action.name}: attribution channel {channel!r} has no cost per "
                    f"touch in the report (it has {', '.join(sorted(channels))})"
                )
            cost = float(channels[channel]["cost_per_touch"])
            actions.append(action.model_copy(update={"cost_fixed": cost}))
        return self.model_copy(update={"actions": tuple(actions)})

    def capacities(self) -> NDArray[np.float64]:
        """Per-action capacity per period (inf where unlimited); do_nothing unlimited."""
        caps = [
            np.inf if a.capacity_per_period is None else a.capacity_per_period for a in self.actions
        ]
        return np.array([np.inf, *caps], dtype=float)


def _from_mapping(data: object, source: str) -> Catalog:
    try:
        return Catalog.model_validate(data)
    except ValidationError as exc:
        where, message, _ = first_problem(exc, "catalog")
        raise ConfigError(f"{source}: {where}: {message}") from None


def load_catalog(path: Path) -> Catalog:
    """Read and validate a catalog YAML file; any problem is one ConfigError naming the field."""
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"catalog {path}: cannot be read ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"catalog {path}: not valid YAML ({exc})") from None
    return _from_mapping(data, f"catalog {path}")


def default_catalog() -> Catalog:
    """The catalog that matches the simulator's world (policies/default_catalog.yaml)."""
    return load_catalog(Path(__file__).with_name("default_catalog.yaml"))
