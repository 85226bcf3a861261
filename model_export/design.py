"""The model's input matrix from a project's declared customer features (any data set).

scikit-learn's ColumnTransformer does the work: numeric features are median-imputed with a
missing-value indicator (a blank income is information, and the learners' input checks refuse
NaN), categorical ones one-hot encoded (at most ``MAX_LEVELS`` levels each, the rarest folded
into one, unseen levels all zero), booleans 0/1 with a missing indicator. The encoder is fitted
on the training rows only and then applied to any frame with the same columns. A project's
declared event features (counts, sums, distinct counts, recency over windows) are numeric columns
too: training computes them at each customer's assignment time, the worker from the live stream.

A fitted encoder travels with the model as skops bytes (``dumps`` / ``loads``): skops rebuilds
scikit-learn objects without unpickling, and refuses any type it was not told to trust.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import skops.io as sio
from numpy.typing import NDArray
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.preprocessing import OneHotEncoder

from ingest.project import FeatureKind, Project
from policies.errors import ModelManifestError, SchemaError

__all__ = ["MAX_LEVELS", "DesignMatrix"]

MAX_LEVELS = 30
# Beyond scikit-learn's own types, which skops trusts: OneHotEncoder's ``dtype`` parameter.
_TRUSTED = ["numpy.dtype"]


class DesignMatrix:
    """Fitted with ``fit``; ``transform`` gives float32 [n, d]; ``names_`` the d column names."""

    def __init__(self, project: Project) -> None:
        self.project = project

    def _columns(self, kind: FeatureKind) -> list[str]:
        declared = [f.name for f in self.project.features if f.kind is kind]
        if kind is FeatureKind.NUMERIC:
            declared += [f.name for f in self.project.event_features]
        return declared

    @property
    def inputs(self) -> list[str]:
        """The frame columns the matrix reads: customer features, then event features."""
        return [f.name for f in self.project.features] + [
            f.name for f in self.project.event_features
        ]

    def fit(self, customers: pd.DataFrame) -> DesignMatrix:
        if not self.inputs:
            raise SchemaError(f"project {self.project.name} declares no customer features")
        missing = [name for name in self.inputs if name not in customers]
        if missing:
            raise SchemaError(f"the customers table lacks the declared feature(s) {missing}")
        numeric = self._columns(FeatureKind.NUMERIC) + self._columns(FeatureKind.BOOLEAN)
        self.transformer_ = ColumnTransformer(
            [
                ("numeric", SimpleImputer(strategy="median", add_indicator=True), numeric),
                (
                    "categorical",
                    OneHotEncoder(
                        handle_unknown="infrequent_if_exist",
                        max_categories=MAX_LEVELS,
                        sparse_output=False,
                    ),
                    self._columns(FeatureKind.CATEGORICAL),
                ),
            ],
            verbose_feature_names_out=False,
        )
        self.transformer_.fit(self._prepared(customers))
        self.names_ = tuple(str(n) for n in self.transformer_.get_feature_names_out())
        return self

    def _prepared(self, customers: pd.DataFrame) -> pd.DataFrame:
        frame = customers[self.inputs].copy()
        for name in self._columns(FeatureKind.BOOLEAN):
            frame[name] = frame[name].astype("Float64").astype(float)
        for name in self._columns(FeatureKind.CATEGORICAL):
            frame[name] = frame[name].astype(object).where(frame[name].notna(), "(missing)")
            frame[name] = frame[name].astype(str)
        for name in self._columns(FeatureKind.NUMERIC):
            frame[name] = frame[name].astype(float)
        return frame

    def transform(self, customers: pd.DataFrame) -> NDArray[np.float32]:
        out = self.transformer_.transform(self._prepared(customers))
        return np.asarray(out, dtype=np.float32)

    def dumps(self) -> bytes:
        """The fitted encoder as skops bytes (the project file supplies the rest)."""
        data: bytes = sio.dumps(self.transformer_)
        return data

    @classmethod
    def loads(cls, project: Project, data: bytes) -> DesignMatrix:
        """An encoder written by ``dumps``, for a project that declares the same features."""
        untrusted = sorted(set(sio.get_untrusted_types(data=data)) - set(_TRUSTED))
        if untrusted:
            raise ModelManifestError(f"the design matrix file holds untrusted types {untrusted}")
        design = cls(project)
        design.transformer_ = sio.loads(data, trusted=_TRUSTED)
        fitted = [str(n) for n in design.transformer_.feature_names_in_]
        if fitted != design.inputs:
            raise ModelManifestError(
                f"project {project.name} declares features {design.inputs}, the model was "
                f"trained on {fitted}: train the model again for the project as it is"
            )
        design.names_ = tuple(str(n) for n in design.transformer_.get_feature_names_out())
        return design
