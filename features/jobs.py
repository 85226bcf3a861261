"""Batch feature jobs: customer lifetime value, RFM segments and personas.

- **CLV**: BG/NBD for the number of future payments and Gamma-Gamma for their value, from the
  `lifetimes` package (MLE fits in seconds). pymc-marketing is its maintained Bayesian successor,
  but it brings PyMC and PyTensor (a C compiler toolchain, MCMC, minutes per fit) into a batch
  job that only needs point estimates; `lifetimes` installs cleanly with this stack and fits the
  same two models. The 12-month CLV is Gamma-Gamma's discounted expected value over 12 months.
- **RFM**: recency, frequency and monetary value over the last year, scored 1-5 by quintile and
  named (champions, loyal, at risk, hibernating, lost, new, promising, needs attention).
- **Personas**: standardized behaviour features -> PCA -> K-Means, with k chosen by silhouette
  (Calinski-Harabasz and Davies-Bouldin reported beside it), each persona's profile, and a
  Kruskal-Wallis test that the personas differ on spend and on retention. The fitted scaler, PCA
  and centroids are exported as plain numbers so a new customer is assigned online.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import kruskal
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA
from sklearn.metrics import calinski_harabasz_score, davies_bouldin_score, silhouette_score
from sklearn.preprocessing import StandardScaler

from policies.errors import SchemaError
from simulator.events import EVENT_TYPES, EventBatch

__all__ = [
    "PERSONA_INPUTS",
    "PersonaModel",
    "activity_windows",
    "cluster_personas",
    "clv_table",
    "fit_personas",
    "rfm_table",
]

PERSONA_INPUTS = (
    "logins_per_seat",
    "features_used_30d",
    "support_tickets_90d",
    "pricing_page_views_30d",
    "log_contract_value",
    "tenure_months",
)


def _require(frame: pd.DataFrame, columns: tuple[str, ...], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise SchemaError(f"{what} lacks column(s) {missing}")


def clv_table(
    transactions: pd.DataFrame, customers: pd.Series, as_of: datetime, months: int = 12
) -> pd.DataFrame:
    """customer_id, clv_12m, expected_purchases_12m, p_alive (BG/NBD + Gamma-Gamma).

    Every customer gets a row; one without any payment yet has 0 for all three (cold start)."""
    from lifetimes import BetaGeoFitter, GammaGammaFitter
    from lifetimes.utils import _customer_lifetime_value, summary_data_from_transaction_data

    _require(transactions, ("customer_id", "occurred_at", "amount"), "transactions")
    tx = transactions.assign(
        occurred_at=pd.to_datetime(transactions["occurred_at"]).dt.tz_localize(None)
    )
    summary = summary_data_from_transaction_data(
        tx,
        "customer_id",
        "occurred_at",
        monetary_value_col="amount",
        observation_period_end=pd.Timestamp(as_of).tz_localize(None),
        freq="D",
    )
    bgf = BetaGeoFitter(penalizer_coef=0.001).fit(
        summary["frequency"], summary["recency"], summary["T"]
    )
    repeat = summary[summary["frequency"] > 0]
    ggf = GammaGammaFitter(penalizer_coef=0.001).fit(repeat["frequency"], repeat["monetary_value"])
    profit = ggf.conditional_expected_average_profit(
        summary["frequency"], summary["monetary_value"]
    )
    # Gamma-Gamma values an account without repeat payments at the population mean, p v / (q - 1),
    # which is undefined when q <= 1 (heavy-tailed spend, as in a B2B base with plans 100x
    # apart). Such an account is valued at its own observed payment instead.
    first_payment = tx.groupby("customer_id")["amount"].mean().reindex(summary.index)
    no_repeat = summary["frequency"] == 0
    profit = profit.where(~no_repeat | (ggf.params_["q"] > 1), first_payment)
    horizon_days = months * 30.4
    clv = _customer_lifetime_value(
        bgf,
        summary["frequency"],
        summary["recency"],
        summary["T"],
        profit,
        time=months,
        discount_rate=0.01,
        freq="D",
    )
    fitted = pd.DataFrame(
        {
            "customer_id": summary.index.astype(str),
            "clv_12m": clv.to_numpy(np.float64),
            "expected_purchases_12m": bgf.conditional_expected_number_of_purchases_up_to_time(
                horizon_days, summary["frequency"], summary["recency"], summary["T"]
            ).to_numpy(np.float64),
            "p_alive": bgf.conditional_probability_alive(
                summary["frequency"], summary["recency"], summary["T"]
            ),
        }
    )
    every = pd.DataFrame({"customer_id": customers.astype(str)})
    return every.merge(fitted, on="customer_id", how="left").fillna(0.0)


_SEGMENTS = (
    ("champions", 4, 5, 4, 5),
    ("loyal", 3, 5, 4, 5),
    ("new", 4, 5, 1, 1),
    ("promising", 4, 5, 1, 3),
    ("at_risk", 1, 2, 3, 5),
    ("lost", 1, 1, 1, 2),
    ("hibernating", 1, 2, 1, 2),
)


def _quintile(values: pd.Series, higher_is_better: bool = True) -> NDArray[np.int64]:
    ranks = values.rank(method="first", ascending=higher_is_better)
    return np.asarray(pd.qcut(ranks, 5, labels=[1, 2, 3, 4, 5]).astype(int), dtype=np.int64)


def rfm_table(
    transactions: pd.DataFrame, customers: pd.Series, as_of: datetime, days: int = 365
) -> pd.DataFrame:
    """customer_id, recency_days, frequency, monetary, rfm_score (3-15), rfm_segment."""
    _require(transactions, ("customer_id", "occurred_at", "amount"), "transactions")
    at = pd.to_datetime(transactions["occurred_at"])
    window = transactions[at > pd.Timestamp(as_of) - pd.Timedelta(days=days)]
    grouped = window.groupby("customer_id").agg(
        last=("occurred_at", "max"), frequency=("amount", "size"), monetary=("amount", "sum")
    )
    frame = pd.DataFrame({"customer_id": customers.astype(str)}).merge(
        grouped, left_on="customer_id", right_index=True, how="left"
    )
    last = pd.to_datetime(frame["last"])
    frame["recency_days"] = ((pd.Timestamp(as_of) - last).dt.days.fillna(days + 1)).astype(np.int64)
    frame["frequency"] = frame["frequency"].fillna(0).astype(np.int64)
    frame["monetary"] = frame["monetary"].fillna(0.0).astype(np.float64)
    r = _quintile(frame["recency_days"], higher_is_better=False)
    f = _quintile(frame["frequency"].astype(float))
    m = _quintile(frame["monetary"])
    frame["rfm_score"] = r + f + m
    segment = np.full(len(frame), "needs_attention", dtype=object)
    for name, r_low, r_high, f_low, f_high in reversed(_SEGMENTS):  # reversed: the first wins
        segment[(r >= r_low) & (r <= r_high) & (f >= f_low) & (f <= f_high)] = name
    frame["rfm_segment"] = segment
    return frame[
        ["customer_id", "recency_days", "frequency", "monetary", "rfm_score", "rfm_segment"]
    ]


def activity_windows(events: EventBatch, n_customers: int, as_of: datetime) -> pd.DataFrame:
    """Event counts in the 1 h / 24 h / 7 d before ``as_of``, and distinct features used in
    7 d, per customer index: what the engine's streaming aggregates hold."""
    age = (as_of - events.start).total_seconds() - events.occurred_s
    seen = age >= 0  # events after as_of are not known yet
    columns = {}
    for name, seconds in (("events_1h", 3_600), ("events_24h", 86_400), ("events_7d", 7 * 86_400)):
        columns[name] = np.bincount(
            events.customer_index[seen & (age <= seconds)], minlength=n_customers
        )
    used = (events.event_type == EVENT_TYPES.index("feature_used")) & seen & (age <= 7 * 86_400)
    pairs = np.unique(events.customer_index[used] * 1_000 + events.detail[used])
    columns["distinct_features_7d"] = np.bincount(pairs // 1_000, minlength=n_customers)
    return pd.DataFrame({k: v.astype(np.int64) for k, v in columns.items()})


def persona_inputs(snapshot: pd.DataFrame) -> NDArray[np.float64]:
    _require(
        snapshot,
        (
            "logins_30d",
            "seats",
            "features_used_30d",
            "support_tickets_90d",
            "pricing_page_views_30d",
            "contract_value",
            "tenure_months",
        ),
        "snapshot",
    )
    return np.column_stack(
        [
            snapshot["logins_30d"].to_numpy(np.float64) / snapshot["seats"].to_numpy(np.float64),
            snapshot["features_used_30d"].to_numpy(np.float64),
            snapshot["support_tickets_90d"].to_numpy(np.float64),
            snapshot["pricing_page_views_30d"].to_numpy(np.float64),
            np.log1p(snapshot["contract_value"].to_numpy(np.float64)),
            snapshot["tenure_months"].to_numpy(np.float64),
        ]
    )


@dataclass(frozen=True)
class PersonaModel:
    """The fitted pipeline as plain numbers: assign(x) = nearest centroid of PCA(scale(x))."""

    mean: list[float]
    scale: list[float]
    components: list[list[float]]
    pca_mean: list[float]
    centroids: list[list[float]]
    report: dict[str, Any] = field(default_factory=dict)

    def assign(self, inputs: NDArray[np.float64]) -> NDArray[np.int64]:
        scaled = (inputs - np.asarray(self.mean)) / np.asarray(self.scale)
        projected = (scaled - np.asarray(self.pca_mean)) @ np.asarray(self.components).T
        distances = ((projected[:, None, :] - np.asarray(self.centroids)[None, :, :]) ** 2).sum(
            axis=2
        )
        return np.asarray(distances.argmin(axis=1), dtype=np.int64)


def cluster_personas(
    x: NDArray[np.float64], k_range: range = range(3, 9), seed: int = 0
) -> tuple[PersonaModel, dict[int, dict[str, float]]]:
    """Standardize -> PCA (90% of the variance) -> K-Means, k chosen by silhouette on a sample
    (Calinski-Harabasz and Davies-Bouldin reported beside it for every k)."""
    if len(x) < 2 * max(k_range):
        raise SchemaError(f"personas need at least {2 * max(k_range)} customers, got {len(x)}")
    scaler = StandardScaler().fit(x)
    pca = PCA(n_components=0.9, random_state=seed).fit(scaler.transform(x))
    z = pca.transform(scaler.transform(x))
    rng = np.random.default_rng(seed)
    sample = rng.choice(len(z), size=min(5_000, len(z)), replace=False)
    scores = {}
    for k in k_range:
        labels = KMeans(n_clusters=k, n_init=5, random_state=seed).fit_predict(z[sample])
        scores[k] = {
            "silhouette": round(float(silhouette_score(z[sample], labels)), 4),
            "calinski_harabasz": round(float(calinski_harabasz_score(z[sample], labels)), 1),
            "davies_bouldin": round(float(davies_bouldin_score(z[sample], labels)), 4),
        }
    best_k = max(scores, key=lambda k: scores[k]["silhouette"])
    kmeans = KMeans(n_clusters=best_k, n_init=10, random_state=seed).fit(z)
    model = PersonaModel(
        mean=scaler.mean_.tolist(),
        scale=scaler.scale_.tolist(),
        components=pca.components_.tolist(),
        pca_mean=pca.mean_.tolist(),
        centroids=kmeans.cluster_centers_.tolist(),
    )
    return model, scores


def fit_personas(
    snapshot: pd.DataFrame,
    retained: NDArray[np.bool_] | None = None,
    k_range: range = range(3, 9),
    seed: int = 0,
) -> PersonaModel:
    """Choose k by silhouette on a sample, fit, profile, and test that personas differ."""
    x = persona_inputs(snapshot)
    model, scores = cluster_personas(x, k_range, seed)
    best_k = len(model.centroids)
    labels = model.assign(x)
    report: dict[str, Any] = {
        "k": best_k,
        "k_scores": scores,
        "profiles": _profiles(snapshot, labels, x),
    }
    spend = [snapshot["contract_value"].to_numpy()[labels == p] for p in range(best_k)]
    report["kruskal_spend_p"] = float(kruskal(*spend).pvalue)
    if retained is not None:
        groups = [retained[labels == p].astype(float) for p in range(best_k)]
        report["kruskal_retention_p"] = float(kruskal(*groups).pvalue)
    return PersonaModel(
        model.mean, model.scale, model.components, model.pca_mean, model.centroids, report
    )


def _profiles(
    snapshot: pd.DataFrame, labels: NDArray[np.int64], x: NDArray[np.float64]
) -> list[dict[str, float]]:
    profiles = []
    for p in np.unique(labels):
        rows = labels == p
        means = dict(zip(PERSONA_INPUTS, x[rows].mean(axis=0).round(3).tolist(), strict=True))
        profiles.append(
            {
                "persona": int(p),
                "size": int(rows.sum()),
                "mean_contract_value": round(
                    float(snapshot["contract_value"].to_numpy()[rows].mean()), 2
                ),
                **means,
            }
        )
    return profiles
