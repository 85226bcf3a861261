"""One ONNX graph for the whole model: features in, ``p_churn`` and every action's uplift out.

Each tree model is converted by onnxmltools (``convert_xgboost``, target opset 15), its names
prefixed so that several live in one graph, and wired to the shared ``features`` input (or to
``features`` plus a constant treatment one-hot, for the S-learner). The learners' linear
combinations and the churn model's Platt calibration are then written as plain ONNX nodes, so
the engine makes one inference call per micro-batch.

Outputs: ``p_churn`` [n, 1]; ``uplift`` [n, actions], retention probability points;
``expansion_uplift`` [n, actions], expansion revenue as a share of the contract value (so the
outputs stay in a range where float32 keeps 1e-5 parity). Column 0 (do_nothing) is 0.

A project's bundle (``nba train --project``) learns one outcome: a binary one fills ``uplift``
(probability points) and a continuous one ``expansion_uplift`` (outcome units); the other output
is all zeros, and ``p_churn`` is the probability of no response without an action.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper
from onnx.compose import add_prefix
from onnxmltools import convert_xgboost
from onnxmltools.convert.common.data_types import FloatTensorType
from xgboost import XGBClassifier

from model_export.churn import ChurnModel
from model_export.learners import Term, UpliftLearner

__all__ = ["OPSET", "OUTPUTS", "build_bundle"]

OPSET = 15
OUTPUTS = ("p_churn", "uplift", "expansion_uplift")
_INPUT = "features"


class _GraphBuilder:
    def __init__(self, n_features: int, n_actions: int) -> None:
        self.n_features = n_features
        self.n_actions = n_actions
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.ml_opset = 1
        self._instances: dict[tuple[str, tuple[float, ...] | None], str] = {}
        self._count = 0

    def const(self, name: str, value: NDArray[np.generic]) -> str:
        self.initializers.append(numpy_helper.from_array(value, name))
        return name

    def node(self, op: str, inputs: Sequence[str], output: str, **attrs: Any) -> str:
        self.nodes.append(helper.make_node(op, list(inputs), [output], **attrs))
        return output

    def _input_for(self, augment: tuple[float, ...] | None, prefix: str) -> str:
        if augment is None:
            return self.node("Identity", [_INPUT], f"{prefix}{_INPUT}")
        row = self.const(f"{prefix}augment", np.asarray([augment], dtype=np.float32))
        rows = self.node("Shape", [_INPUT], f"{prefix}shape")
        first = self.node(
            "Slice",
            [
                rows,
                self.const(f"{prefix}s0", np.array([0])),
                self.const(f"{prefix}s1", np.array([1])),
            ],
            f"{prefix}n",
        )
        width = self.const(f"{prefix}w", np.array([len(augment)]))
        target = self.node("Concat", [first, width], f"{prefix}target", axis=0)
        expanded = self.node("Expand", [row, target], f"{prefix}expanded")
        return self.node("Concat", [_INPUT, expanded], f"{prefix}{_INPUT}", axis=1)

    def model(self, key: str, model: XGBClassifier, augment: tuple[float, ...] | None) -> str:
        """The [n, 1] output of a tree model, instantiated once per (model, augment)."""
        found = self._instances.get((key, augment))
        if found:
            return found
        self._count += 1
        prefix = f"m{self._count}_"
        width = self.n_features + (0 if augment is None else len(augment))
        converted = convert_xgboost(
            model, initial_types=[(_INPUT, FloatTensorType([None, width]))], target_opset=OPSET
        )
        self.ml_opset = max(
            [
                self.ml_opset,
                *(o.version for o in converted.opset_import if o.domain == "ai.onnx.ml"),
            ]
        )
        prefixed = add_prefix(converted, prefix)
        self._input_for(augment, prefix)
        self.nodes.extend(prefixed.graph.node)
        self.initializers.extend(prefixed.graph.initializer)
        outputs = [o.name for o in prefixed.graph.output]
        if isinstance(model, XGBClassifier):  # probabilities [n, 2] -> positive class [n, 1]
            probabilities = next(o for o in outputs if o.endswith("probabilities"))
            column = self.node(
                "Slice",
                [
                    probabilities,
                    self.const(f"{prefix}c1", np.array([1])),
                    self.const(f"{prefix}c2", np.array([2])),
                    self.const(f"{prefix}ax", np.array([1])),
                ],
                f"{prefix}p1",
            )
        else:
            column = self.node(
                "Reshape", [outputs[0], self.const(f"{prefix}col", np.array([-1, 1]))], f"{prefix}y"
            )
        self._instances[(key, augment)] = column
        return column

    def combination(self, name: str, learner: UpliftLearner) -> str:
        """[n, actions]: column a is the learner's linear combination of terms; column 0 is 0."""
        zero = self.node(
            "Mul",
            [
                self._any_column(learner),
                self.const(f"{name}_zero", np.array(0.0, dtype=np.float32)),
            ],
            f"{name}_col0",
        )
        columns = [zero]
        for a in range(1, self.n_actions):
            columns.append(self._terms(f"{name}_a{a}", learner, learner.terms_[a]))
        return self.node("Concat", columns, name, axis=1)

    def _any_column(self, learner: UpliftLearner) -> str:
        term = learner.terms_[1][0]
        return self.model(f"{id(learner)}:{term.model}", learner.models_[term.model], term.augment)

    def _terms(self, name: str, learner: UpliftLearner, terms: list[Term]) -> str:
        parts = []
        for k, term in enumerate(terms):
            out = self.model(
                f"{id(learner)}:{term.model}", learner.models_[term.model], term.augment
            )
            coef = self.const(f"{name}_coef{k}", np.array(term.coef, dtype=np.float32))
            parts.append(self.node("Mul", [out, coef], f"{name}_t{k}"))
        return parts[0] if len(parts) == 1 else self.node("Sum", parts, name)

    def zeros(self, name: str) -> str:
        """[n, actions] of zeros: the output of an outcome the bundle does not model."""
        weights = np.zeros((self.n_features, self.n_actions), dtype=np.float32)
        return self.node("MatMul", [_INPUT, self.const(f"{name}_w", weights)], name)

    def churn(self, churn: ChurnModel) -> str:
        raw = self.model("churn", churn.model_, None)
        clipped = self.node(
            "Clip",
            [
                raw,
                self.const("churn_lo", np.array(1e-6, dtype=np.float32)),
                self.const("churn_hi", np.array(1 - 1e-6, dtype=np.float32)),
            ],
            "churn_clipped",
        )
        one_minus = self.node(
            "Sub", [self.const("churn_one", np.array(1.0, dtype=np.float32)), clipped], "churn_1mp"
        )
        odds = self.node("Div", [clipped, one_minus], "churn_odds")
        logit = self.node("Log", [odds], "churn_logit")
        scaled = self.node(
            "Mul",
            [logit, self.const("churn_a", np.array(churn.a_, dtype=np.float32))],
            "churn_scaled",
        )
        shifted = self.node(
            "Add",
            [scaled, self.const("churn_b", np.array(churn.b_, dtype=np.float32))],
            "churn_shifted",
        )
        return self.node("Sigmoid", [shifted], "p_churn")


def build_bundle(
    feature_names: Sequence[str],
    actions: Sequence[str],
    churn: ChurnModel,
    retention: UpliftLearner | None,
    expansion: UpliftLearner | None,
    version: str,
) -> onnx.ModelProto:
    """The whole graph; a learner given as None gives an output of zeros."""
    builder = _GraphBuilder(len(feature_names), len(actions))
    builder.churn(churn)
    for name, learner in (("uplift", retention), ("expansion_uplift", expansion)):
        if learner is None:
            builder.zeros(name)
        else:
            builder.combination(name, learner)
    graph = helper.make_graph(
        builder.nodes,
        f"nba_bundle_{version}",
        [helper.make_tensor_value_info(_INPUT, TensorProto.FLOAT, [None, len(feature_names)])],
        [
            helper.make_tensor_value_info("p_churn", TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info("uplift", TensorProto.FLOAT, [None, len(actions)]),
            helper.make_tensor_value_info(
                "expansion_uplift", TensorProto.FLOAT, [None, len(actions)]
            ),
        ],
        initializer=builder.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[
            helper.make_opsetid("", OPSET),
            helper.make_opsetid("ai.onnx.ml", builder.ml_opset),
        ],
        producer_name="nba-engine",
    )
    model.ir_version = 8
    helper.set_model_props(
        model,
        {"version": version, "actions": ",".join(actions), "features": ",".join(feature_names)},
    )
    onnx.checker.check_model(model)
    return model
