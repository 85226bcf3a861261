"""Persona segments on any project's customers, and the tests that they differ.

The project file's ``personas`` section names the numeric features to cluster on (blanks take
the median) and the columns to compare. Clustering is features.jobs' (standardize -> PCA ->
K-Means, k by silhouette). Each persona is named by its two most distinctive inputs (largest
standardized distance of its mean from the base's). For each compared column: Kruskal-Wallis
across personas (scipy), then every pair by Mann-Whitney U with Holm's correction for the
number of pairs (statsmodels' ``multipletests``).
"""

from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from numpy.typing import NDArray
from scipy.stats import kruskal, mannwhitneyu
from statsmodels.stats.multitest import multipletests

from features.jobs import cluster_personas
from ingest.project import Project

__all__ = ["persona_report"]


def _inputs(project: Project, customers: pd.DataFrame) -> tuple[tuple[str, ...], pd.DataFrame]:
    names = project.declared_personas().inputs
    frame = customers[list(names)].astype(float)
    return names, frame.fillna(frame.median())


def _name(z_means: pd.Series) -> str:
    top = z_means.abs().sort_values(ascending=False).index[:2]
    return ", ".join(f"{'high' if z_means[c] > 0 else 'low'} {c}" for c in top)


def _compare(values: pd.Series, labels: NDArray[np.int64]) -> dict[str, Any]:
    groups = {int(p): values[labels == p].dropna().to_numpy() for p in np.unique(labels)}
    h, p_value = kruskal(*groups.values())
    pairs = list(combinations(sorted(groups), 2))
    raw = [float(mannwhitneyu(groups[a], groups[b]).pvalue) for a, b in pairs]
    reject, adjusted, _, _ = multipletests(raw, alpha=0.05, method="holm")
    return {
        "kruskal_h": float(h),
        "kruskal_p": float(p_value),
        "pairs_holm": [
            {"a": a, "b": b, "p": p, "p_holm": float(q), "differ": bool(r)}
            for (a, b), p, q, r in zip(pairs, raw, adjusted, reject, strict=True)
        ],
    }


def persona_report(
    project: Project, customers: pd.DataFrame, seed: int = 0
) -> tuple[NDArray[np.int64], dict[str, Any]]:
    """Each customer's persona and the report (k and its scores, profiles, tests)."""
    names, x = _inputs(project, customers)
    model, scores = cluster_personas(x.to_numpy(np.float64), seed=seed)
    labels = model.assign(x.to_numpy(np.float64))
    z = (x - x.mean()) / x.std(ddof=0).replace(0, 1)
    profiles = []
    for p in np.unique(labels):
        rows = labels == p
        profiles.append(
            {
                "persona": int(p),
                "name": _name(z[rows].mean()),
                "customers": int(rows.sum()),
                **{c: round(float(x.loc[rows, c].mean()), 3) for c in names},
            }
        )
    tests = {
        name: _compare(customers[list(columns)].astype(float).sum(axis=1, min_count=1), labels)
        for name, columns in project.declared_personas().compare.items()
    }
    report = {"k": len(model.centroids), "k_scores": scores, "profiles": profiles, "tests": tests}
    return labels, report
