"""Exact path-dependent TreeSHAP on the linear kernel, with per-model tables built at load."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from explainers.encoding import checked_matrix
from explainers.outputs import assemble_explanation, empty_explanation, resolve_classes
from explainers.prediction_links import Link, verified_link
from explainers.tree import TREE_SHAP, TreeInputModel, calibrate_offset, check_ensemble
from explainers.tree_ensemble import TreeEnsemble
from explainers.treeshap_fast import linear_tree_shap
from explainers.treeshap_kernel import PARALLEL_MIN_ROWS, expected_value
from explainers.treeshap_tables import CompiledEnsemble, compile_ensemble
from explainers.types import Explanation, FloatMatrix, IntVector, OutputSpace, Predictions

# Names of the kernel in use, as the versions endpoint shows them.
KERNEL_LINEAR = "linear_treeshap"
KERNEL_MIXED = "linear_treeshap+classic"  # trees past the memory budget run the classic one
KERNEL_CLASSIC = "classic_treeshap"

# The compiled representation may take at most this many times the model file's bytes
# ("a few"; LightGBM's text model compiles to about 1.5x, a skops forest to about 1.5x).
TABLE_MEMORY_FACTOR = 4


def memory_budget(model_file_bytes: int) -> int:
    """Return the bytes the compiled representation of a model file may take."""
    return TABLE_MEMORY_FACTOR * model_file_bytes


@dataclass(frozen=True, slots=True, eq=False)
class _Output:
    """The trees of one model output, their node values (pre-order) and expected value."""

    tree_ids: np.ndarray
    values: np.ndarray
    scales: np.ndarray  # per split record: its children's leaf values (see split_scales)
    expected: float


class LinearTreeExplainer:
    """Exact path-dependent TreeSHAP for flat ensembles (LightGBM, scikit-learn trees).

    At construction the ensemble's constant offset is derived from the model (which
    proves the flattening reproduces it), the linear kernel's tables are built within
    `memory_budget` bytes, and the kernels run once (`warm_up_ms`). Attributes
    `kernel`, `memory_bytes`, `memory_budget_bytes`, `trees_linear` and `trees_classic`
    describe the result.
    """

    method = TREE_SHAP

    def __init__(self, ensemble: TreeEnsemble, model: TreeInputModel, *,
                 probe: FloatMatrix | None = None, memory_budget: int | None = None) -> None:
        check_ensemble(ensemble, model)
        self._model = model
        self.output_space: OutputSpace = ensemble.output_space
        calibrated = calibrate_offset(ensemble, model, probe=probe)
        self._float32_inputs = calibrated.float32_inputs
        shared_values = bool(np.all(calibrated.tree_outputs >= 0))
        # per-output node values and tree lists, besides the tables
        copies = 1 if shared_values else calibrated.n_outputs
        own_bytes = 8 * copies * (len(calibrated.roots) + calibrated.values.shape[0])
        compiled = compile_ensemble(
            calibrated, memory_budget=None if memory_budget is None
            else memory_budget - own_bytes, value_copies=copies)
        self._trees = compiled.trees
        self._tables = compiled.tables
        self._outputs = _outputs(calibrated, compiled, shared_values)
        self._expected = np.array([o.expected for o in self._outputs])
        scale_bytes = sum(o.scales.nbytes for o in self._outputs[:copies])
        self.memory_bytes: int = compiled.memory_bytes + own_bytes + scale_bytes
        self.memory_budget_bytes: int | None = memory_budget
        self.trees_linear: int = compiled.linear_trees
        self.trees_classic: int = len(calibrated.roots) - compiled.linear_trees
        self.kernel: str = (KERNEL_CLASSIC if compiled.linear_trees == 0 else
                            KERNEL_MIXED if self.trees_classic else KERNEL_LINEAR)
        rows = np.zeros((0, len(model.schema.features)))
        if probe is not None:
            rows = checked_matrix(probe, model.schema)[:PARALLEL_MIN_ROWS]
        self._link: Link | None = verified_link(model, rows)
        self.warm_up_ms: float = self._warm_up()

    @property
    def shares_model_call(self) -> bool:
        """Whether `explain_predicting` derives predictions from the explained outputs."""
        return self._link is not None

    def explain(self, X: FloatMatrix, *, class_indices: IntVector | None = None) -> Explanation:
        """Explain each row; for multiclass, the given class per row (default: predicted)."""
        started = time.perf_counter()
        X = checked_matrix(X, self._model.schema)
        if len(X) == 0:
            return empty_explanation(self._model.schema, method=self.method,
                                     output_space=self.output_space)
        return self._explain(X, self._model.output(X), class_indices, started)

    def explain_predicting(self, X: FloatMatrix, *, class_indices: IntVector | None = None
                           ) -> tuple[Predictions, Explanation]:
        """Return predictions and explanations of the rows from one call of the model.

        Predictions come from the model's raw output through the link verified at load;
        without one, from the model's own `predict`.
        """
        started = time.perf_counter()
        X = checked_matrix(X, self._model.schema)
        if len(X) == 0:
            return self._model.predict(X), self.explain(X)
        outputs = self._model.output(X)
        predictions = self._link(outputs) if self._link is not None else self._model.predict(X)
        return predictions, self._explain(X, outputs, class_indices, started)

    def kernel_call(self, output: int = 0) -> Callable[[FloatMatrix], FloatMatrix]:
        """Return the bare kernel of one output on model-input rows (for benchmarks)."""
        chosen = self._outputs[output]

        def call(inputs: FloatMatrix) -> FloatMatrix:
            return linear_tree_shap(inputs, chosen.tree_ids, trees=self._trees,
                                    tables=self._tables, values=chosen.values,
                                    scales=chosen.scales)

        return call

    def _explain(self, X: FloatMatrix, outputs: FloatMatrix, class_indices: IntVector | None,
                 started: float) -> Explanation:
        schema = self._model.schema
        classes = resolve_classes(outputs, schema, class_indices=class_indices)
        inputs = self._model.numeric_input(X)
        if self._float32_inputs:
            inputs = inputs.astype(np.float32).astype(np.float64)
        if classes is None:
            # one explained output: no grouping by class (tens of us per call, cold)
            only = self._outputs[0]
            values = linear_tree_shap(inputs, only.tree_ids, trees=self._trees,
                                      tables=self._tables, values=only.values,
                                      scales=only.scales)
            base = np.full(len(X), self._expected[0])
        else:
            values = np.empty(X.shape, dtype=np.float64)
            for k in np.unique(classes):
                output = self._outputs[k]
                rows = np.flatnonzero(classes == k)
                picked = inputs if len(rows) == len(X) else inputs[rows]
                values[rows] = linear_tree_shap(picked, output.tree_ids, trees=self._trees,
                                                tables=self._tables, values=output.values,
                                                scales=output.scales)
            base = self._expected[classes]
        return assemble_explanation(schema, outputs, classes, method=self.method,
                                    output_space=self.output_space, base_values=base,
                                    values=values, started=started)

    def _warm_up(self) -> float:
        # a single row and a parallel batch: compiles what the process warm-up has not
        started = time.perf_counter()
        output = self._outputs[0]
        for n in (1, PARALLEL_MIN_ROWS):
            linear_tree_shap(np.zeros((n, len(self._model.schema.features))), output.tree_ids,
                             trees=self._trees, tables=self._tables, values=output.values,
                             scales=output.scales)
        return (time.perf_counter() - started) * 1000


def _outputs(ensemble: TreeEnsemble, compiled: CompiledEnsemble,
             shared_values: bool) -> tuple[_Output, ...]:
    tables = compiled.tables
    shared = compiled.node_values(ensemble.values[:, 0]) if shared_values else None
    shared_scales = None if shared is None else compiled.split_scales(shared)
    outputs = []
    for k in range(ensemble.n_outputs):
        if shared is None or shared_scales is None:
            ids = np.arange(len(ensemble.roots), dtype=np.int64)
            values = compiled.node_values(ensemble.values[:, k])
            scales = compiled.split_scales(values)
        else:
            ids = np.flatnonzero(ensemble.tree_outputs == k).astype(np.int64)
            values, scales = shared, shared_scales
        roots = tables.tree_starts[ids].astype(np.int32)
        expected = float(ensemble.base_offset[k]) + expected_value(
            roots, trees=compiled.trees, values=values)
        outputs.append(_Output(ids, values, scales, expected))
    return tuple(outputs)
