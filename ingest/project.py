"""The project file: one YAML file that declares a team's data, features, outcome and rules.

Everything the engine needs to know about a data set that is not code: where each table's file
is and how to read it, which of its columns are which contract column, the customer features and
their kinds, the event types (and which of them trigger a decision), the event-derived features,
the outcome the policy optimizes, where a customer's value comes from, the consent columns, the
action catalog, the segment thresholds and the contact rules. ``load_project`` validates it with
pydantic (``extra="forbid"``: a misspelt key is an error) and turns any problem into one
``ConfigError`` that names the key. Paths are relative to the project file.
"""

from __future__ import annotations

import enum
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from policies.arms import ArmConfig
from policies.catalog import Catalog, Channel, default_catalog
from policies.decide import PolicyConfig
from policies.errors import ConfigError, first_problem
from policies.rules import ContactRules
from policies.segments import SegmentThresholds

__all__ = [
    "CONTROL",
    "EventFeature",
    "Feature",
    "FeatureKind",
    "Outcome",
    "Personas",
    "Project",
    "Source",
    "TableName",
    "load_project",
]

CONTROL = "do_nothing"  # the catalog's implied action 0: a past campaign's control arm
TableName = Literal["customers", "transactions", "events", "experiments", "touches", "conversions"]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]
_WINDOW = re.compile(r"^(\d+)([hd])$")


def _span(window: str) -> timedelta:
    match = _WINDOW.match(window)
    if not match:
        raise ValueError(f"window {window!r} must look like '24h' or '7d'")
    return timedelta(**{"hours" if match[2] == "h" else "days": int(match[1])})


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Source(_Strict):
    """How to read one table's file and map its columns onto the contract's.

    ``columns`` maps a contract column to the file's column (unmapped contract columns are looked
    up under their own name); ``values`` recodes a column's values (e.g. a campaign's arm labels
    to action names); ``constants`` fills a contract column the file lacks (e.g. a campaign's
    assignment date or its known propensity); ``key_from_row`` makes customer ids from the row
    number when the file has none.
    """

    path: Path
    format: Literal["csv", "parquet", "jsonl"] | None = None  # default: from the suffix
    delimiter: str = Field(",", min_length=1)  # "whitespace" for runs of spaces or tabs
    encoding: str = "utf-8"
    header: bool = True
    names: tuple[str, ...] | None = None  # the file's column names when it has no header
    columns: dict[str, str] = Field(default_factory=dict)
    values: dict[str, dict[str, str]] = Field(default_factory=dict)
    constants: dict[str, str | float | int | bool] = Field(default_factory=dict)
    date_formats: dict[str, str] = Field(default_factory=dict)  # strptime formats, per column
    key_from_row: str | None = None  # prefix of generated ids: "<prefix><row number>"

    @model_validator(mode="after")
    def _names_without_header(self) -> Source:
        if not self.header and not self.names:
            raise ValueError("a file without a header row needs `names`")
        return self

    @property
    def file_format(self) -> str:
        if self.format is not None:
            return self.format
        suffix = self.path.suffix.lower().lstrip(".")
        return {"csv": "csv", "txt": "csv", "tsv": "csv", "parquet": "parquet"}.get(
            suffix, "jsonl" if suffix in {"jsonl", "ndjson"} else "csv"
        )

    def file_column(self, contract_column: str) -> str:
        return self.columns.get(contract_column, contract_column)


class FeatureKind(enum.StrEnum):
    NUMERIC = "numeric"
    CATEGORICAL = "categorical"
    BOOLEAN = "boolean"


class Feature(_Strict):
    """A customer column the models read, known before any decision time."""

    name: Name
    kind: FeatureKind


class EventFeature(_Strict):
    """A feature derived from events over a trailing window (the batch job and the stream
    compute it from this one declaration)."""

    name: Name
    event_type: str
    aggregate: Literal["count", "sum", "distinct", "recency"]
    window: str  # "<n>h" or "<n>d", from 1 h to 90 d
    # the summed or distinct-counted property; `property` in the file (a builtin's name here)
    event_property: str | None = Field(None, alias="property")

    @field_validator("window")
    @classmethod
    def _window(cls, value: str) -> str:
        span = _span(value)
        if not timedelta(hours=1) <= span <= timedelta(days=90):
            raise ValueError(f"window {value!r} must lie between 1h and 90d")
        return value

    @model_validator(mode="after")
    def _property_when_needed(self) -> EventFeature:
        if self.aggregate in ("sum", "distinct") and not self.event_property:
            raise ValueError(f"aggregate {self.aggregate!r} needs `property`")
        return self

    @property
    def span(self) -> timedelta:
        return _span(self.window)


class Outcome(_Strict):
    """What the policy optimizes: a column of the experiments table, over a window after the
    assignment. Binary outcomes are 0/1; continuous ones (revenue) are amounts >= 0."""

    name: Name
    kind: Literal["binary", "continuous"]
    window: str = "30d"
    also: dict[Name, Literal["binary", "continuous"]] = Field(default_factory=dict)

    @property
    def columns(self) -> dict[str, str]:
        """Every outcome column the experiments table carries, with its kind."""
        return {self.name: self.kind, **self.also}


class Value(_Strict):
    """Where a customer's value (the EV formula's multiplier) comes from."""

    source: Literal["clv", "column"]
    column: Name | None = None

    @model_validator(mode="after")
    def _column_when_needed(self) -> Value:
        if self.source == "column" and not self.column:
            raise ValueError("source 'column' needs `column`")
        return self


class Personas(_Strict):
    """Persona segments: the numeric features they are clustered on, and the columns (or sums
    of columns) on which the personas are tested for differences."""

    inputs: tuple[Name, ...] = Field(min_length=2)
    compare: dict[Name, tuple[Name, ...]] = Field(default_factory=dict)


class Events(_Strict):
    types: tuple[Name, ...] = Field(min_length=1)
    triggers: tuple[Name, ...] = ()
    properties: dict[Name, Literal["numeric", "categorical"]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _triggers_are_types(self) -> Events:
        unknown = sorted(set(self.triggers) - set(self.types))
        if unknown:
            raise ValueError(f"triggers {unknown} are not among the event types")
        return self


class Project(_Strict):
    """A validated project file; ``root`` is the folder relative paths are read from."""

    name: Name
    sources: dict[TableName, Source] = Field(min_length=1)
    features: tuple[Feature, ...] = ()
    events: Events | None = None
    event_features: tuple[EventFeature, ...] = ()
    outcome: Outcome | None = None
    # Default: the CLV job's 12-month value (BG/NBD x Gamma-Gamma on the transactions).
    value: Value = Field(default_factory=lambda: Value(source="clv"))
    consent: dict[Channel, Name] = Field(default_factory=dict)  # channel -> boolean column
    # Event types that withdraw consent on channels (e.g. unsubscribe: [email]): a worker
    # applies them within the micro-batch that carries them, batch scoring from the import.
    opt_outs: dict[Name, tuple[Channel, ...]] = Field(default_factory=dict)
    do_not_disturb: Name | None = None  # a boolean customer column: true means no contact
    personas: Personas | None = None
    # A numeric feature whose percentile in the base is the engagement axis of the segments
    # (e.g. visits per month); without one every customer counts as engaged.
    engagement: Name | None = None
    catalog: Catalog | None = None
    segments: SegmentThresholds = SegmentThresholds()
    contact_rules: ContactRules = ContactRules()
    root: Path = Path(".")

    @model_validator(mode="after")
    def _consistent(self) -> Project:
        names = [f.name for f in self.features]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"features declared twice: {duplicates}")
        if "events" in self.sources and self.events is None:
            raise ValueError("an events source needs the `events` declaration (types, triggers)")
        if "experiments" in self.sources and self.outcome is None:
            raise ValueError("an experiments source needs the `outcome` declaration")
        numeric = {f.name for f in self.features if f.kind is FeatureKind.NUMERIC}
        if self.personas is not None:
            used = set(self.personas.inputs).union(*self.personas.compare.values())
            if used - numeric:
                raise ValueError(
                    f"personas use columns that are not numeric features: {sorted(used - numeric)}"
                )
        if self.engagement is not None and self.engagement not in numeric:
            raise ValueError(f"engagement {self.engagement!r} is not a numeric feature")
        self._check_event_uses()
        return self

    def _check_event_uses(self) -> None:
        """Event features and opt-outs name declared event types."""
        if (self.event_features or self.opt_outs) and self.events is None:
            raise ValueError("event_features and opt_outs need the `events` declaration")
        types = set(self.events.types) if self.events is not None else set()
        for feature in self.event_features:
            if feature.event_type not in types:
                raise ValueError(
                    f"event feature {feature.name!r} counts unknown event type "
                    f"{feature.event_type!r}"
                )
        if set(self.opt_outs) - types:
            raise ValueError(
                f"opt_outs name unknown event types {sorted(set(self.opt_outs) - types)}"
            )

    def declared_events(self) -> Events:
        if self.events is None:
            raise ConfigError(f"project {self.name}: no `events` declaration")
        return self.events

    def declared_personas(self) -> Personas:
        if self.personas is None:
            raise ConfigError(f"project {self.name}: no `personas` section")
        return self.personas

    def declared_outcome(self) -> Outcome:
        if self.outcome is None:
            raise ConfigError(f"project {self.name}: no `outcome` declaration")
        return self.outcome

    def path_of(self, table: TableName) -> Path:
        return (self.root / self.sources[table].path).resolve()

    def policy_config(self, arms: ArmConfig) -> PolicyConfig:
        """The policy this project declares: its catalog (the simulated world's when it has
        none), segment thresholds and contact rules, with the given arms."""
        return PolicyConfig(
            value_source=self.value_source,
            catalog=self.catalog or default_catalog(),
            segments=self.segments,
            contact=self.contact_rules,
            arms=arms,
        )

    @property
    def value_source(self) -> str:
        """What a customer's value is, as a decision's explanation names it."""
        if self.value.source == "clv":
            return "12-month CLV (BG/NBD x Gamma-Gamma)"
        return str(self.value.column).replace("_", " ")

    @property
    def action_names(self) -> tuple[str, ...]:
        """The actions a past campaign's rows may name (the control first)."""
        return self.catalog.names if self.catalog is not None else (CONTROL,)


def load_project(path: Path) -> Project:
    """Read and validate a project file; any problem is one ConfigError naming the key."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"project file {path}: cannot be read ({exc.strerror})") from None
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"project file {path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"project file {path}: expected a mapping of keys at the top level")
    try:
        return Project.model_validate({**data, "root": path.resolve().parent})
    except ValidationError as exc:
        where, message, _ = first_problem(exc, "project")
        raise ConfigError(f"project file {path}: {where}: {message}") from None
