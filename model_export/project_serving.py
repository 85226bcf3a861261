"""A project's bundle outside a stream worker: the whole base of an import scored and decided in
one pass with the project's own policy (`nba score --all --project`, `nba evaluate`, `nba ope`).

What the policy needs beyond the bundle's outputs comes from the project file:

- **value**: the declared column (a blank is worth nothing: the policy never pays to save an
  unknown value), or the CLV job's per-customer ``clv`` (`nba features clv`, or ``clv_12m`` as
  the Feast ``clv`` view serves it to a worker), where a customer without purchases is worth 0;
- **consent** per channel from the declared columns; a channel without a column, or a blank, is
  no consent (consent is never assumed); a declared opt-out event withdraws it;
- **do-not-disturb** from the declared column: a flagged customer gets no contact;
- **engagement**: the percentile in the base of the declared ``engagement`` feature, or 1 for
  everyone when the project declares none.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import pandas as pd
from numpy.typing import NDArray

from ingest.project import Project
from model_export.design import DesignMatrix
from model_export.explain import Explainer
from model_export.features import share_at_or_below
from model_export.manifest import Registry
from model_export.serving import BundleScorer, Predictions
from policies.catalog import CHANNELS, Catalog
from policies.decide import Decisions, PolicyConfig, Scores, decide_batch
from policies.errors import ConfigError, ModelManifestError, SchemaError
from policies.rules import ContactState

__all__ = [
    "ProjectScorer",
    "consent_matrix",
    "contact_state",
    "customer_values",
    "engagement_of",
    "engagement_reference",
    "opted_out",
    "project_scores",
    "score_project",
]

Floats = NDArray[np.float64]


@dataclass(frozen=True)
class ProjectScorer:
    """A project's registered bundle with the design matrix it was trained on."""

    bundle: BundleScorer
    design: DesignMatrix
    binary: bool

    @classmethod
    def load(
        cls,
        registry: Registry,
        project: Project,
        catalog: Catalog,
        version: str | None = None,
        threads: int = 0,
    ) -> ProjectScorer:
        chosen = registry.chosen(version)
        manifest = registry.verified(chosen)
        if manifest.project is None or manifest.project.name != project.name:
            trained_on = manifest.project.name if manifest.project else "the simulated world"
            raise ModelManifestError(
                f"model {chosen} was trained for {trained_on}, not for project {project.name}"
            )
        design = DesignMatrix.loads(project, registry.design(manifest))
        bundle = BundleScorer(registry, catalog, chosen, threads, features=design.names_)
        return cls(bundle, design, manifest.project.outcome_kind == "binary")

    @property
    def version(self) -> str:
        return self.bundle.version

    def explainer(self, registry: Registry) -> Explainer:
        """The risk drivers of this version (model_export.explain)."""
        manifest = self.bundle.manifest
        binding = manifest.project
        if binding is None:  # load() refuses such a bundle; this keeps mypy informed
            raise ModelManifestError(f"model {manifest.version} is not a project's model")
        return Explainer(registry.baseline(manifest), self.design.names_, binding.platt_a)

    def predict(self, customers: pd.DataFrame) -> Predictions:
        return self.bundle.predict(self.design.transform(customers))


def customer_values(
    project: Project, customers: pd.DataFrame, clv: pd.DataFrame | None = None
) -> Floats:
    value = project.value
    if value.source == "column":
        raw = pd.to_numeric(customers[value.column], errors="coerce")
    elif clv is None and "clv_12m" in customers:  # the worker's read of the Feast clv view
        raw = pd.to_numeric(customers["clv_12m"], errors="coerce")
    else:
        if clv is None:
            raise ConfigError(
                f"project {project.name} values customers by CLV: pass the output of "
                "`nba features clv` (--values)"
            )
        by_id = clv.set_index(clv["customer_id"].astype(str))["clv"]
        raw = customers["customer_id"].astype(str).map(by_id)
    values = raw.fillna(0.0).to_numpy(np.float64)
    if np.any(values < 0):
        raise SchemaError(f"customer value must be >= 0; {int((values < 0).sum())} are negative")
    return values


def consent_matrix(project: Project, customers: pd.DataFrame) -> NDArray[np.bool_]:
    """[customer, channel] in CHANNELS order; no column or a blank means no consent."""
    declared = {str(channel): column for channel, column in project.consent.items()}
    columns = []
    for channel in CHANNELS:
        name = declared.get(channel)
        if name is None:
            columns.append(np.zeros(len(customers), dtype=bool))
        else:
            columns.append(customers[name].astype("boolean").fillna(False).to_numpy(bool))
    return np.column_stack(columns)


def opted_out(
    project: Project, customers: pd.DataFrame, events: pd.DataFrame | None
) -> NDArray[np.bool_]:
    """[customer, channel]: withdrawn by one of the project's opt-out events in ``events``."""
    revoked = np.zeros((len(customers), len(CHANNELS)), dtype=bool)
    if events is None or not project.opt_outs:
        return revoked
    position = pd.Series(np.arange(len(customers)), index=customers["customer_id"].astype(str))
    for event_type, channels in project.opt_outs.items():
        who = events.loc[events["event_type"] == event_type, "customer_id"].astype(str)
        rows = position.reindex(who.unique()).dropna().to_numpy(np.int64)
        for channel in channels:
            revoked[rows, CHANNELS.index(channel)] = True
    return revoked


def contact_state(
    project: Project,
    customers: pd.DataFrame,
    revoked: NDArray[np.bool_] | None = None,
) -> ContactState:
    """Consent (declared columns, minus what ``revoked`` withdraws) and do-not-disturb (the
    declared column; a blank is not flagged), for customers never contacted before."""
    consent = consent_matrix(project, customers)
    if revoked is not None:
        consent &= ~revoked
    state = ContactState.fresh(len(customers), consent)
    if project.do_not_disturb is None:
        return state
    flagged = customers[project.do_not_disturb].astype("boolean").fillna(False).to_numpy(bool)
    return replace(state, do_not_disturb=flagged)


def engagement_reference(values: pd.Series) -> Floats:
    """The base's known values of the engagement feature, sorted: what a customer is ranked
    against (a worker keeps it, so that a micro-batch is not ranked against itself)."""
    known = pd.to_numeric(values, errors="coerce").to_numpy(np.float64)
    return np.sort(known[~np.isnan(known)])


def engagement_of(
    project: Project, customers: pd.DataFrame, reference: Floats | None = None
) -> Floats:
    """The share of the base (``reference``, else these customers) at or below each customer's
    engagement feature; 0 where it is blank, 1 for all when the project declares none."""
    if project.engagement is None:
        return np.ones(len(customers))
    column = customers[project.engagement]
    base = reference if reference is not None else engagement_reference(column)
    values = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    return np.where(np.isnan(values), 0.0, share_at_or_below(base, values))


def project_scores(
    customers: pd.DataFrame,
    project: Project,
    predictions: Predictions,
    clv: pd.DataFrame | None = None,
    decision_keys: list[str] | None = None,
    engagement_base: Floats | None = None,
) -> Scores:
    """The policy's input from the bundle's (or the native models') predictions: a binary
    outcome's uplift is weighed by the customer's value, a continuous one is already in money.
    ``decision_keys``: the triggers' event ids in a worker; ``batch:<customer>`` otherwise.
    ``engagement_base``: the base's sorted engagement values (`engagement_reference`); without
    it these customers are the base (a whole import scored at once)."""
    p_none, uplift, expansion = predictions
    ids = customers["customer_id"].astype(str).tolist()
    return Scores(
        customer_ids=ids,
        decision_keys=decision_keys or [f"batch:{c}" for c in ids],
        p_churn=p_none,
        uplift_retention=np.clip(uplift, -1.0, 1.0),
        uplift_expansion=expansion,
        customer_value=customer_values(project, customers, clv),
        engagement=engagement_of(project, customers, engagement_base),
    )


def score_project(
    customers: pd.DataFrame,
    project: Project,
    scorer: ProjectScorer,
    policy: PolicyConfig,
    budget: float,
    clv: pd.DataFrame | None = None,
    events: pd.DataFrame | None = None,
) -> Decisions:
    """One bundle call and one allocation for every customer of the import; ``events``: the
    import's events, whose opt-outs withdraw consent."""
    scores = project_scores(customers, project, scorer.predict(customers), clv)
    state = contact_state(project, customers, opted_out(project, customers, events))
    return decide_batch(scores, state, policy, budget)
