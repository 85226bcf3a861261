"""Uplift learners for several actions at once, each action against control.

Every learner is a *linear combination of tree models*: the uplift of action ``a`` is
``sum_k coef_k x model_k(x [+ treatment one-hot]) + constant``. That is what lets one ONNX
graph reproduce any of them exactly (model_export.bundle), and it is why they are written here
on XGBoost base learners rather than taken from causalml, whose meta-learners hold models we
cannot export as one graph; causalml's own learners are the reference in
benchmarks/uplift_reference.py.

| learner | uplift of action a |
|---|---|
| S  | f_a(x, 1) - f_a(x, 0), per action a classifier with the treatment indicator as a feature |
| SP | f(x, e_a) - f(x, 0), one model over every arm, the treatment one-hot as features |
| T  | mu_a(x) - mu_0(x), one classifier per arm |
| X  | g x tau0_a(x) + (1 - g) x tau1_a(x), regressors on imputed effects (Kunzel et al. 2019) |
| DR | tau_a(x), a regressor on cross-fitted doubly robust pseudo-outcomes (Kennedy 2020) |
| R  | tau_a(x), a regressor of (y - m(x)) / (t - e) weighted by (t - e)^2, m cross-fitted |
|    | (the R-learner's residual-on-residual loss, Nie & Wager 2021) |
| CT | a regressor on the transformed outcome Y (T - e) / (e (1 - e)) (Athey & Imbens 2015): |
|    | the class transformation, generalised to arms of unequal size |

Estimator contract (scikit-learn): ``__init__`` stores arguments, ``fit`` returns self, learned
state ends in ``_``. Inputs: X [n, d] float32, treatment [n] action index (0 = control), y [n].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import KFold
from xgboost import XGBClassifier, XGBRegressor

from policies.errors import SchemaError

__all__ = [
    "LEARNERS",
    "Kind",
    "Term",
    "UpliftLearner",
    "base_model",
    "make_learner",
    "model_output",
]

Floats = NDArray[np.float64]
Kind = Literal["classifier", "regressor"]
TreeModel = XGBClassifier | XGBRegressor


@dataclass(frozen=True)
class Term:
    """``coef x model(x)``; with ``augment`` set, the model sees x with these constant columns
    appended (the treatment indicator of an S-learner)."""

    model: str
    coef: float
    augment: tuple[float, ...] | None = None


def base_model(kind: Kind, seed: int, n_estimators: int = 200) -> TreeModel:
    params = {
        "n_estimators": n_estimators,
        "max_depth": 4,
        "learning_rate": 0.05,
        "subsample": 0.8,
        "colsample_bytree": 0.8,
        "min_child_weight": 5.0,
        "n_jobs": 2,
        "random_state": seed,
    }
    return XGBClassifier(**params) if kind == "classifier" else XGBRegressor(**params)


def model_output(model: TreeModel, x: NDArray[np.float32]) -> Floats:
    if isinstance(model, XGBClassifier):
        return np.asarray(model.predict_proba(x)[:, 1], dtype=np.float64)
    return np.asarray(model.predict(x), dtype=np.float64)


def check_training_data(
    x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, n_actions: int
) -> None:
    if x.ndim != 2 or x.shape[0] != treatment.shape[0] or x.shape[0] != y.shape[0]:
        raise SchemaError("X, treatment and y must have one row per customer")
    if np.any(~np.isfinite(x)):
        raise SchemaError("features hold NaN or infinite values")
    if not np.any(treatment == 0):
        raise SchemaError("the training data has no control group (treatment 0)")
    for a in range(1, n_actions):
        if np.count_nonzero(treatment == a) < 20:
            raise SchemaError(f"action {a} has fewer than 20 treated rows")
    if np.unique(y).size < 2:
        raise SchemaError("the outcome has a single value; nothing to learn")


class UpliftLearner:
    """Base of the learners: holds the tree models and, per action, the terms of its uplift."""

    name = "base"

    def __init__(
        self, n_actions: int, outcome: Kind = "classifier", seed: int = 0, n_estimators: int = 200
    ) -> None:
        self.n_actions = n_actions
        self.outcome = outcome
        self.seed = seed
        self.n_estimators = n_estimators

    def fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> UpliftLearner:
        check_training_data(x, treatment, y, self.n_actions)
        self.models_: dict[str, TreeModel] = {}
        self.terms_: list[list[Term]] = [[] for _ in range(self.n_actions)]
        self._fit(
            x, treatment, np.asarray(y, dtype=np.float64), np.asarray(propensity, dtype=np.float64)
        )
        return self

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        raise NotImplementedError

    def _model(
        self,
        key: str,
        kind: Kind,
        x: NDArray[np.float32],
        y: Floats,
        rounds_factor: int = 1,
        weight: Floats | None = None,
    ) -> TreeModel:
        model = base_model(kind, self.seed + len(self.models_), rounds_factor * self.n_estimators)
        model.fit(x, y.astype(int) if kind == "classifier" else y, sample_weight=weight)
        self.models_[key] = model
        return model

    def predict_uplift(self, x: NDArray[np.float32]) -> Floats:
        """[n, n_actions] uplift of each action vs control; column 0 is 0."""
        out = np.zeros((x.shape[0], self.n_actions))
        # A pooled model's control term recurs in every action: each (model, augment) once.
        outputs: dict[tuple[str, tuple[float, ...] | None], Floats] = {}
        for a, terms in enumerate(self.terms_):
            for term in terms:
                key = (term.model, term.augment)
                if key not in outputs:
                    outputs[key] = model_output(self.models_[term.model], augment(x, term.augment))
                out[:, a] += term.coef * outputs[key]
        return out


def augment(x: NDArray[np.float32], columns: tuple[float, ...] | None) -> NDArray[np.float32]:
    if columns is None:
        return x
    constant = np.broadcast_to(np.asarray(columns, dtype=np.float32), (x.shape[0], len(columns)))
    return np.hstack([x, constant])


class SLearner(UpliftLearner):
    """One model per action, on control and that action's rows, with the treatment indicator
    as an extra feature (as causalml's multi-treatment S-learner does)."""

    name = "s"

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        for a in range(1, self.n_actions):
            rows = (treatment == a) | (treatment == 0)
            indicator = (treatment[rows] == a).astype(np.float32)[:, None]
            self._model(f"s{a}", self.outcome, np.hstack([x[rows], indicator]), y[rows])
            self.terms_[a] = [
                Term(f"s{a}", 1.0, augment=(1.0,)),
                Term(f"s{a}", -1.0, augment=(0.0,)),
            ]


class PooledSLearner(UpliftLearner):
    """One model over every arm, with the treatment one-hot as features: the baseline outcome
    is learned from all rows instead of again for each action, which is what a small arm needs.

    The treatment columns get fewer splits per tree in one model than in a model per action, so
    it boosts twice the rounds (measured on the simulator at 40,000 customers: 200 rounds earn
    0.75 of the true-effect oracle, 400 rounds 0.78, 600 no more; benchmarks/decision_quality).
    """

    name = "sp"

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        onehot = np.eye(self.n_actions, dtype=np.float32)[treatment][:, 1:]
        self._model("sp", self.outcome, np.hstack([x, onehot]), y, rounds_factor=2)
        control = (0.0,) * (self.n_actions - 1)
        for a in range(1, self.n_actions):
            arm = tuple(1.0 if k == a - 1 else 0.0 for k in range(self.n_actions - 1))
            self.terms_[a] = [Term("sp", 1.0, augment=arm), Term("sp", -1.0, augment=control)]


class TLearner(UpliftLearner):
    name = "t"

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        for a in range(self.n_actions):
            rows = treatment == a
            self._model(f"mu{a}", self.outcome, x[rows], y[rows])
        for a in range(1, self.n_actions):
            self.terms_[a] = [Term(f"mu{a}", 1.0), Term("mu0", -1.0)]


def _arm_share(treatment: NDArray[np.int64], propensity: Floats, a: int) -> float:
    """P(action a | a or control) in a randomized experiment, from the logged propensities."""
    p_a = float(np.mean(propensity[treatment == a]))
    p_0 = float(np.mean(propensity[treatment == 0]))
    return p_a / (p_a + p_0)


class XLearner(UpliftLearner):
    name = "x"

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        control = treatment == 0
        mu0 = self._model("mu0", self.outcome, x[control], y[control])
        for a in range(1, self.n_actions):
            rows = treatment == a
            mua = self._model(f"mu{a}", self.outcome, x[rows], y[rows])
            imputed_treated = y[rows] - model_output(mu0, x[rows])
            imputed_control = model_output(mua, x[control]) - y[control]
            self._model(f"tau1_{a}", "regressor", x[rows], imputed_treated)
            self._model(f"tau0_{a}", "regressor", x[control], imputed_control)
            g = _arm_share(treatment, propensity, a)
            self.terms_[a] = [Term(f"tau0_{a}", g), Term(f"tau1_{a}", 1.0 - g)]


def _out_of_fold(
    learner: UpliftLearner, x: NDArray[np.float32], y: Floats, fit_on: NDArray[np.bool_]
) -> Floats:
    """Each row's outcome predicted by a model fitted on the other fold's ``fit_on`` rows (two
    folds): the nuisance models of DR and R, never scored on a row they learned from."""
    out = np.zeros(len(y))
    folds = KFold(n_splits=2, shuffle=True, random_state=learner.seed)
    for train, test in folds.split(x):
        rows = train[fit_on[train]]
        model = base_model(learner.outcome, learner.seed, learner.n_estimators)
        out[test] = model_output(model.fit(x[rows], y[rows]), x[test])
    return out


class DRLearner(UpliftLearner):
    name = "dr"

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        for a in range(1, self.n_actions):
            rows = np.flatnonzero((treatment == a) | (treatment == 0))
            xa, t, ya = x[rows], (treatment[rows] == a).astype(float), y[rows]
            e = _arm_share(treatment, propensity, a)
            p1, p0 = _out_of_fold(self, xa, ya, t == 1), _out_of_fold(self, xa, ya, t == 0)
            pseudo = p1 - p0 + t * (ya - p1) / e - (1 - t) * (ya - p0) / (1 - e)
            self._model(f"tau_{a}", "regressor", xa, pseudo)
            self.terms_[a] = [Term(f"tau_{a}", 1.0)]


class RLearner(UpliftLearner):
    """Measured on the simulator (`benchmarks.decision_quality --learners sp,r`, 40,000
    customers): 0.57 / 0.61 / 0.58 of the true-effect oracle at 1 / 5 / 20% budgets, against
    the pooled S-learner's 0.82 / 0.79 / 0.78. With a tenth of the customers per action against
    half in control, the control rows' residuals are divided by a small t - e: the target is
    noisy, and the weight (t - e)^2 does not make up for it at this size."""

    name = "r"

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        for a in range(1, self.n_actions):
            rows = np.flatnonzero((treatment == a) | (treatment == 0))
            xa, ya = x[rows], y[rows]
            residual_t = (treatment[rows] == a) - _arm_share(treatment, propensity, a)
            residual_y = ya - _out_of_fold(self, xa, ya, np.ones(rows.size, dtype=bool))
            self._model(f"tau_{a}", "regressor", xa, residual_y / residual_t, weight=residual_t**2)
            self.terms_[a] = [Term(f"tau_{a}", 1.0)]


class ClassTransformation(UpliftLearner):
    name = "ct"

    def _fit(
        self, x: NDArray[np.float32], treatment: NDArray[np.int64], y: Floats, propensity: Floats
    ) -> None:
        for a in range(1, self.n_actions):
            rows = (treatment == a) | (treatment == 0)
            e = _arm_share(treatment, propensity, a)
            t = (treatment[rows] == a).astype(float)
            transformed = y[rows] * (t - e) / (e * (1 - e))
            self._model(f"z_{a}", "regressor", x[rows], transformed)
            self.terms_[a] = [Term(f"z_{a}", 1.0)]


LEARNERS: dict[str, type[UpliftLearner]] = {
    cls.name: cls
    for cls in (
        SLearner,
        PooledSLearner,
        TLearner,
        XLearner,
        DRLearner,
        RLearner,
        ClassTransformation,
    )
}


def make_learner(
    name: str, n_actions: int, outcome: Kind = "classifier", seed: int = 0, n_estimators: int = 200
) -> UpliftLearner:
    try:
        cls = LEARNERS[name]
    except KeyError:
        raise SchemaError(f"unknown learner {name!r}; choose from {', '.join(LEARNERS)}") from None
    return cls(n_actions, outcome, seed, n_estimators)
