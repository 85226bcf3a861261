"""How far a past campaign's causal conclusions can be trusted: refutation tests of the ATE and
a comparison of uplift learners, EconML's causal forest among them.

Refutations (the three of DoWhy's that apply to a randomized campaign, as DoWhy defines them):

- **placebo treatment**: the arms shuffled at random; a sound estimator finds no effect.
- **random common cause**: an independent random covariate added to the adjustment set; the
  estimate must not move.
- **data subset**: the estimate on many random 80% subsets; it must stay near the full one.

The estimator refuted is the ATE adjusted for the features (OLS of the outcome on the arm
dummies and the design matrix, heteroskedasticity-robust errors, statsmodels), weighted by the
inverse propensity. DoWhy itself is not used: dowhy 0.14 pins scipy down to 1.15.3 and brings
cvxpy, causal-learn and sympy, where the project pins scipy 1.17.1 (shared/STACK_NOTES.md); the
three refuters are a few lines each on statsmodels.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import statsmodels.api as sm
from numpy.typing import NDArray
from statsmodels.tools.sm_exceptions import SingularMatrixWarning

from model_export.evaluation import quiet_sklift
from model_export.learners import LEARNERS, Kind, make_learner

if TYPE_CHECKING:
    from model_export.experiment import Campaign

__all__ = ["compare_learners", "refute"]

Floats = NDArray[np.float64]
SUBSETS = 50


def _adjusted_effects(
    y: Floats, treatment: NDArray[np.int64], x: NDArray[np.float32], weight: Floats, arms: int
) -> tuple[Floats, Floats]:
    """Each action's effect and p-value from a weighted OLS with the features as controls."""
    dummies = np.column_stack([(treatment == a).astype(float) for a in range(1, arms)])
    design = sm.add_constant(np.column_stack([dummies, x]), has_constant="add")
    with warnings.catch_warnings():
        # Every level of a categorical feature is one-hot encoded (the trees want them all), so
        # the controls are collinear with the constant; statsmodels' pseudo-inverse still
        # identifies the arm coefficients, which are not collinear with anything.
        warnings.simplefilter("ignore", SingularMatrixWarning)
        fit = sm.WLS(y, design, weights=weight).fit(cov_type="HC1")
    return np.asarray(fit.params[1:arms]), np.asarray(fit.pvalues[1:arms])


def refute(campaign: Campaign, seed: int) -> dict[str, dict[str, Any]]:
    """Per action: the adjusted ATE, and what each refuter found."""
    c, x, rng = campaign, campaign.x, np.random.default_rng(seed)
    arms, weight = len(c.actions), 1.0 / c.propensity
    effect, _ = _adjusted_effects(c.y, c.treatment, x, weight, arms)
    placebo, placebo_p = _adjusted_effects(c.y, rng.permutation(c.treatment), x, weight, arms)
    noise = rng.normal(size=(x.shape[0], 1)).astype(np.float32)
    common, _ = _adjusted_effects(c.y, c.treatment, np.hstack([x, noise]), weight, arms)
    subsets = []
    for _ in range(SUBSETS):
        rows = rng.choice(c.y.size, size=int(0.8 * c.y.size), replace=False)
        subsets.append(
            _adjusted_effects(c.y[rows], c.treatment[rows], x[rows], weight[rows], arms)[0]
        )
    spread = np.asarray(subsets)
    return {
        c.actions[a]: {
            "adjusted_ate": float(effect[a - 1]),
            "placebo_treatment": {
                "effect": float(placebo[a - 1]),
                "p_value": float(placebo_p[a - 1]),
                "passes": bool(placebo_p[a - 1] > 0.01),
            },
            "random_common_cause": {
                "effect": float(common[a - 1]),
                "change": float(common[a - 1] - effect[a - 1]),
            },
            "data_subset": {
                "mean": float(spread[:, a - 1].mean()),
                "sd": float(spread[:, a - 1].std(ddof=1)),
                "subsets": SUBSETS,
            },
        }
        for a in range(1, arms)
    }


def _causal_forest(
    campaign: Campaign, x: NDArray[np.float32], train: NDArray[np.int64], seed: int
) -> Any:
    from econml.dml import CausalForestDML
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    forest = CausalForestDML(
        model_y=HistGradientBoostingRegressor(max_iter=100, random_state=seed),
        model_t=HistGradientBoostingClassifier(max_iter=100, random_state=seed),
        discrete_treatment=True,
        n_estimators=200,
        min_samples_leaf=50,
        cv=3,
        random_state=seed,
    )
    return forest.fit(campaign.y[train], campaign.treatment[train], X=x[train])


def compare_learners(
    campaign: Campaign,
    train: NDArray[np.int64],
    test: NDArray[np.int64],
    seed: int,
    fitted: dict[str, Floats],
) -> dict[str, dict[str, float]]:
    """Held-out Qini of each action for every learner of the project and EconML's
    CausalForestDML, fitted on the same training rows; ``fitted``: held-out uplift of learners
    the caller already fitted on them (not fitted again)."""
    from sklift.metrics import qini_auc_score

    c, x = campaign, campaign.x
    kind: Kind = "classifier" if c.binary else "regressor"
    predictions: dict[str, Floats] = {}
    for name in LEARNERS:
        if name in fitted:
            predictions[name] = fitted[name]
            continue
        learner = make_learner(name, len(c.actions), kind, seed)
        learner.fit(x[train], c.treatment[train], c.y[train], c.propensity[train])
        predictions[name] = learner.predict_uplift(x[test])
    forest = _causal_forest(c, x, train, seed)
    predictions["econml_causal_forest"] = np.column_stack(
        [np.zeros(test.size)]
        + [forest.effect(x[test], T0=0, T1=a) for a in range(1, len(c.actions))]
    )
    y, t = c.y[test], c.treatment[test]
    table: dict[str, dict[str, float]] = {}
    with quiet_sklift():
        for name, uplift in predictions.items():
            table[name] = {}
            for a in range(1, len(c.actions)):
                rows = (t == a) | (t == 0)
                score = qini_auc_score(y[rows], uplift[rows, a], (t[rows] == a).astype(int))
                table[name][c.actions[a]] = round(float(score), 5)
    return table
