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

``transform`` does not call scikit-learn's ``transform``: that spends ~3 ms per call in input
validation and column dispatch whatever the number of rows, and a worker or the API transforms
a micro-batch of a few customers at a time. The fitted encoder is read once into plain arrays
(``_Tables``): the imputer's medians and the columns it flags, and each categorical level's
one-hot cells, found by passing every known level and an unseen one through scikit-learn's own
encoder. A test compares the result with scikit-learn's on frames with blanks, unseen and rare
levels. (skl2onnx's graph of the same encoder was tried first: onnxruntime refuses an unseen
level when rare levels are folded, where scikit-learn encodes it as rare.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True)
class _Levels:
    """One categorical column's share of the one-hot block: row k of ``cells`` is what level
    ``known[k]`` sets (zeros outside the column's own cells), its last row an unseen level's."""

    known: pd.Index
    cells: NDArray[np.float32]

    def encode(self, values: NDArray[Any]) -> NDArray[np.float32]:
        codes = self.known.get_indexer(pd.Index(values))
        return self.cells[np.where(codes < 0, len(self.known), codes)]


@dataclass(frozen=True)
class _Tables:
    """A fitted ColumnTransformer as arrays: numeric inputs imputed with ``medians`` (inputs
    that were blank throughout training are dropped, as scikit-learn drops them), followed by
    the missing flags of ``flagged``, then the one-hot block."""

    kept: NDArray[np.intp]
    medians: NDArray[np.float64]
    flagged: NDArray[np.intp]
    levels: tuple[_Levels, ...]

    @classmethod
    def of(cls, transformer: ColumnTransformer) -> _Tables:
        fitted = {name: (step, list(columns)) for name, step, columns in transformer.transformers_}
        imputer, numeric = fitted["numeric"]
        encoder, categorical = fitted["categorical"]
        kept, medians, flagged = np.array([], np.intp), np.array([]), np.array([], np.intp)
        if numeric:
            statistics = np.asarray(imputer.statistics_, dtype=np.float64)
            kept = np.flatnonzero(~np.isnan(statistics))
            medians = statistics[kept]
            if imputer.indicator_ is not None:
                flagged = np.asarray(imputer.indicator_.features_, np.intp)
        levels = tuple(_levels(encoder, categorical, k) for k in range(len(categorical)))
        return cls(kept, medians, flagged, levels)


_UNSEEN = "\x00unseen level\x00"  # no declared level holds NUL bytes


def _levels(encoder: OneHotEncoder, columns: list[str], k: int) -> _Levels:
    """Column ``k``'s cells, read off scikit-learn's encoding of each known level and of an
    unseen one, the other columns held at their first level: the cells that vary between those
    rows are column ``k``'s own."""
    known = [str(level) for level in encoder.categories_[k]]
    firsts = {c: str(encoder.categories_[i][0]) for i, c in enumerate(columns)}
    probe = pd.DataFrame([firsts | {columns[k]: v} for v in [*known, _UNSEEN]], columns=columns)
    encoded = np.asarray(encoder.transform(probe), dtype=np.float32)
    others = encoded.min(axis=0) == encoded.max(axis=0)
    encoded[:, others] = 0.0
    return _Levels(pd.Index(known), encoded)


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
        self.tables_ = _Tables.of(self.transformer_)
        return self

    @staticmethod
    def _values(column: pd.Series, kind: FeatureKind) -> NDArray[Any]:
        """One input column as the encoder reads it: floats (a blank is NaN, a boolean 0/1)
        or strings (a blank level is "(missing)")."""
        if kind is FeatureKind.CATEGORICAL:
            text = column.astype(object).where(column.notna(), "(missing)").astype(str)
            return text.to_numpy(object)
        return column.to_numpy(np.float64, na_value=np.nan)

    def _prepared(self, customers: pd.DataFrame) -> pd.DataFrame:
        kinds = {name: kind for kind in FeatureKind for name in self._columns(kind)}
        return pd.DataFrame(
            {name: self._values(customers[name], kinds[name]) for name in self.inputs},
            index=customers.index,
        )

    def transform(self, customers: pd.DataFrame) -> NDArray[np.float32]:
        """What the fitted encoder gives for ``customers``, computed from ``tables_``."""
        tables, n = self.tables_, len(customers)
        numeric = self._columns(FeatureKind.NUMERIC) + self._columns(FeatureKind.BOOLEAN)
        values = np.empty((n, len(numeric)))
        for k, name in enumerate(numeric):
            values[:, k] = self._values(customers[name], FeatureKind.NUMERIC)
        blank = np.isnan(values)
        imputed = np.where(blank[:, tables.kept], tables.medians, values[:, tables.kept])
        blocks = [imputed.astype(np.float32), blank[:, tables.flagged].astype(np.float32)]
        categorical = self._columns(FeatureKind.CATEGORICAL)
        if categorical:
            onehot = np.zeros((n, tables.levels[0].cells.shape[1]), np.float32)
            for name, levels in zip(categorical, tables.levels, strict=True):
                onehot += levels.encode(self._values(customers[name], FeatureKind.CATEGORICAL))
            blocks.append(onehot)
        return np.hstack(blocks)

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
        design.tables_ = _Tables.of(design.transformer_)
        return design
