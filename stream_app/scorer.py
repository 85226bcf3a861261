"""The ONNX bundle as the engine serves it: loaded through its manifest, one call per batch.

At start the manifest is verified (checksum, parity) and checked against the feature vector the
engine builds and the catalog's actions; a mismatch is a ModelManifestError, so a worker never
serves a model that reads its inputs in another order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from pandas.api.types import is_bool_dtype, is_numeric_dtype

from feedback.drift import DriftTracker
from ingest.project import Project
from model_export.design import DesignMatrix
from model_export.drift_reference import DriftReference
from model_export.features import (
    COUNT_FEATURES,
    FEATURES,
    engagement_score,
    feature_matrix,
    logins_per_seat,
    policy_scores,
)
from model_export.manifest import Registry
from model_export.project_serving import ProjectScorer
from model_export.serving import BundleScorer, Predictions
from policies.catalog import CHANNELS, Catalog
from policies.decide import Scores
from policies.errors import ModelManifestError
from policies.rules import ContactState
from stream_app.feature_store import fill_cold_start
from stream_app.metrics import EngineMetrics

__all__ = [
    "BaseSummary",
    "FeatureScoreSource",
    "store_segments",
    "ServedModel",
    "column_default",
    "defaults_of",
    "feature_defaults",
    "snapshot_reader",
]

_LOG = logging.getLogger("nba.scorer")


class Scorer(Protocol):
    @property
    def version(self) -> str: ...

    def predict(self, features: NDArray[np.float32]) -> Predictions: ...


class ServedModel:
    """The promoted bundle as a long-running worker serves it.

    Hot reload: at most every ``reload_s`` seconds it reads the registry's champion; when another
    version was promoted it loads and verifies it, then serves it from the next batch on (the
    version that scored a batch is the one its actions carry). A version that fails to load is
    counted and logged, and the old one keeps serving. Drift: every scored batch is binned
    against the served version's training reference; the PSI gauges follow recent traffic.

    With a ``project``, it serves that project's bundles (``nba train --project``) together with
    the design matrix each was trained with; ``predict_frame`` encodes and scores a batch with
    the same version.
    """

    def __init__(
        self,
        registry: Registry,
        catalog: Catalog,
        reload_s: float = 10.0,
        metrics: EngineMetrics | None = None,
        project: Project | None = None,
    ) -> None:
        self._registry = registry
        self._catalog = catalog
        self._reload_s = reload_s
        self._metrics = metrics
        self._project = project
        self._checked = time.monotonic()
        self._load(registry.champion())

    def _load(self, version: str | None) -> None:
        if self._project is None:
            self._scorer = BundleScorer(self._registry, self._catalog, version)
            self.design: DesignMatrix | None = None
            self.feature_names: tuple[str, ...] = FEATURES
        else:
            loaded = ProjectScorer.load(self._registry, self._project, self._catalog, version, 1)
            self._scorer, self.design = loaded.bundle, loaded.design
            self.feature_names = loaded.design.names_
            self.explainer = loaded.explainer(self._registry)
        reference = DriftReference.read(self._registry.folder(self._scorer.version))
        self.drift = DriftTracker(reference) if reference is not None else None

    @property
    def version(self) -> str:
        return self._scorer.version

    def refresh(self) -> bool:
        """Serve a newly promoted version, if any; True when the served version changed."""
        if time.monotonic() - self._checked < self._reload_s:
            return False
        self._checked = time.monotonic()
        champion = self._registry.champion()
        if champion is None or champion == self.version:
            return False
        try:
            self._load(champion)
        except ModelManifestError as exc:
            _LOG.error(
                "keeping model %s: the promoted %s cannot be served: %s",
                self.version,
                champion,
                exc,
            )
            self._count_reload("refused")
            return False
        _LOG.warning("now serving model %s", champion)
        self._count_reload("loaded")
        return True

    def _count_reload(self, result: str) -> None:
        if self._metrics is not None:
            self._metrics.model_reloads.labels(result=result).inc()

    def predict(self, features: NDArray[np.float32]) -> Predictions:
        self.refresh()
        return self._predict(features)

    def predict_frame(self, frame: pd.DataFrame) -> tuple[Predictions, list[list[str]]]:
        """A project's batch, encoded by the design matrix of the version that scores it: the
        predictions, and each customer's top risk drivers as reason codes."""
        self.refresh()
        if self.design is None:
            raise ModelManifestError("predict_frame serves a project's bundles only")
        features = self.design.transform(frame)
        return self._predict(features), self.explainer.drivers(features)

    def _predict(self, features: NDArray[np.float32]) -> Predictions:
        p_churn, uplift, expansion = self._scorer.predict(features)
        if self.drift is not None:
            modelled = uplift if np.any(uplift) else expansion
            scores = {"p_churn": p_churn, "best_uplift": modelled.max(axis=1)}
            self.drift.observe(features, self.feature_names, scores)
            self._export_drift()
        return p_churn, uplift, expansion

    def _export_drift(self) -> None:
        if self._metrics is None or self.drift is None:
            return
        for name, value in self.drift.feature_psi().items():
            self._metrics.feature_psi.labels(feature=name).set(value)
        for name, value in self.drift.score_psi().items():
            self._metrics.score_psi.labels(score=name).set(value)


FeatureReader = Callable[[list[str]], pd.DataFrame]


@dataclass(frozen=True)
class BaseSummary:
    """What scoring keeps of the whole base: the cold-start defaults (`feature_defaults`) and
    the engagement percentile's reference (every customer's logins per seat, sorted)."""

    defaults: pd.Series
    engagement_reference: NDArray[np.float64]

    @classmethod
    def of(cls, base: pd.DataFrame) -> BaseSummary:
        return cls(feature_defaults(base), np.sort(logins_per_seat(base)))


class FeatureScoreSource:
    """Scores for a batch of customers: read their features (the Feast online store, or a
    snapshot frame), give cold starts the defaults, one bundle call. ``base``: the whole base's
    frame, or its summary (what a worker keeps: stream_app.worker.base_summary)."""

    def __init__(
        self, read: FeatureReader, scorer: Scorer, base: pd.DataFrame | BaseSummary
    ) -> None:
        self._read = read
        self.scorer = scorer
        summary = base if isinstance(base, BaseSummary) else BaseSummary.of(base)
        self._defaults = summary.defaults
        self._engagement_reference = summary.engagement_reference
        self._consent: dict[str, NDArray[np.bool_]] = {}
        self._notes: dict[str, dict[str, Any]] = {}

    def scores(self, customers: Sequence[str], event_ids: Sequence[str]) -> Scores:
        raw = self._read(list(customers))
        self._notes = dict(zip(event_ids, store_segments(raw), strict=True))
        frame = fill_cold_start(raw, self._defaults, COUNT_FEATURES)
        # Consent only where the store says True: a null (unknown) is no consent, not bool(NaN).
        consent = np.column_stack([frame[f"consent_{c}"].eq(True).to_numpy() for c in CHANNELS])
        self._consent = dict(zip(frame["customer_id"].astype(str), consent, strict=True))
        p_churn, uplift, expansion_share = self.scorer.predict(feature_matrix(frame))
        return policy_scores(
            frame,
            list(event_ids),
            p_churn,
            uplift,
            expansion_share,
            engagement_score(frame, self._engagement_reference),
        )

    def annotations(self, event_ids: Sequence[str]) -> list[dict[str, Any]]:
        """The segments the store held for the triggers scored just before (cold starts:
        none, not the defaults)."""
        return [self._notes.get(event_id, {}) for event_id in event_ids]

    def contacts(self, customers: Sequence[str]) -> ContactState:
        """Consent of customers scored just before (the read above carried it); the contact
        history is added by the engine from stream_app.contacts."""
        consent = np.array([self._consent[c] for c in customers], dtype=bool).reshape(
            -1, len(CHANNELS)
        )
        return ContactState.fresh(len(customers), consent)


def store_segments(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Each row's persona and RFM segment as `nba-actions` carries them (None where absent)."""

    def text(column: str, value: Any) -> str | None:
        if pd.isna(value):
            return None
        return f"persona {int(value)}" if column == "persona" else str(value)

    columns = {c: frame[c].tolist() for c in ("persona", "rfm_segment") if c in frame}
    return [
        {"persona": None, "rfm_segment": None} | {c: text(c, v[row]) for c, v in columns.items()}
        for row in range(len(frame))
    ]


def snapshot_reader(snapshot: pd.DataFrame) -> FeatureReader:
    """Features straight from a snapshot frame (tests, and batch scoring of a parquet base)."""
    indexed = snapshot.assign(customer_id=snapshot["customer_id"].astype(str)).set_index(
        "customer_id", drop=False
    )

    def read(customers: list[str]) -> pd.DataFrame:
        frame = indexed.reindex(customers).assign(customer_id=customers).reset_index(drop=True)
        return frame.assign(cold_start=frame["plan"].isna().to_numpy())

    return read


def feature_defaults(snapshot: pd.DataFrame) -> pd.Series:
    """Cold-start defaults: the base's medians (numbers) and most common values (the rest); no
    consent on any channel, whatever most of the base gave (consent is never assumed)."""
    return defaults_of(
        {c: column_default(snapshot[c]) for c in snapshot.columns if c != "customer_id"}
    )


def column_default(values: pd.Series) -> Any:
    """One column's cold-start default: its median if it holds numbers, else its most common
    value (the smallest of several; NaN when it holds none)."""
    if is_numeric_dtype(values) and not is_bool_dtype(values):
        return values.median()
    modes = values.mode()
    return modes.iloc[0] if len(modes) else np.nan


def defaults_of(columns: dict[str, Any]) -> pd.Series:
    """The defaults of these columns, with consent refused on every channel."""
    defaults = pd.Series(columns, dtype=object)
    for channel in CHANNELS:
        defaults[f"consent_{channel}"] = False
    return defaults
