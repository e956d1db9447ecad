"""Entry point of the linear TreeSHAP kernels: rows, blocks or threads; and their warm-up.

Batches are spread over plain Python threads, each running a GIL-free kernel on its own
range of row blocks, rather than over numba's parallel threading layer. Our threads
overlap freely whichever layer numba would pick (workqueue aborts on concurrent launches,
tbb needs a library pip does not put on the loader path), need no lock, add no second
OpenMP thread pool beside LightGBM's (GNU OpenMP is not fork-safe either), and compile
faster.
"""

from __future__ import annotations

import os
import threading
import time

import numpy as np

from explainers.tree_ensemble import FlatTree, build_ensemble, category_bitset
from explainers.treeshap_block import BLOCK_ROWS, explain_block_range
from explainers.treeshap_kernel import (
    MISSING_AS_ZERO,
    MISSING_TO_DEFAULT,
    PARALLEL_MIN_ROWS,
    ZERO_TO_DEFAULT,
    TreeArrays,
    expected_value,
    predict_trees,
)
from explainers.treeshap_linear import LinearTrees, shap_rows_serial
from explainers.treeshap_tables import compile_ensemble
from explainers.types import FloatMatrix, FloatVector, OutputSpace

# Below this many rows a block (which always computes BLOCK_ROWS lanes) costs more than
# explaining the rows one by one.
BLOCK_MIN_ROWS = 3

# Blocks per chunk handed to a thread: small enough to even out threads slowed by other
# work on the machine, large enough that taking a chunk costs nothing.
_CHUNK_BLOCKS = 4


def available_cores() -> int:
    """Cores this process may run on (the container's CPU set, not the host's count)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def linear_tree_shap(X: FloatMatrix, tree_ids: np.ndarray, *, trees: TreeArrays,
                     tables: LinearTrees, values: FloatVector, scales: FloatVector,
                     threads: int | None = None) -> FloatMatrix:
    """Return exact path-dependent SHAP values (n, M) of the trees `tree_ids`.

    X must already be in the model's input encoding and precision; `trees`, `tables`, the
    per-node `values` and the per-split `scales` come from `compile_ensemble`. Fewer than
    PARALLEL_MIN_ROWS rows run on the calling thread (one by one, or in blocks); larger
    batches also use `threads - 1` helper threads (default: one per available core).
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    tree_ids = np.ascontiguousarray(tree_ids, dtype=np.int64)
    n = X.shape[0]
    if n < BLOCK_MIN_ROWS:
        return np.asarray(shap_rows_serial(X, tree_ids, trees, tables, values, scales))
    phi = np.zeros(X.shape, dtype=np.float64)
    n_blocks = -(-n // BLOCK_ROWS)
    workers = 1 if n < PARALLEL_MIN_ROWS else min(threads or available_cores(),
                                                    -(-n_blocks // _CHUNK_BLOCKS))
    if workers <= 1:
        explain_block_range(X, phi, 0, n_blocks, tree_ids, trees, tables, values, scales)
        return phi
    chunks = iter(range(0, n_blocks, _CHUNK_BLOCKS))
    taking = threading.Lock()

    def work() -> None:
        while True:
            with taking:
                first = next(chunks, None)
            if first is None:
                return
            explain_block_range(X, phi, first, min(first + _CHUNK_BLOCKS, n_blocks),
                                tree_ids, trees, tables, values, scales)

    helpers = [threading.Thread(target=work, name=f"treeshap-{i}", daemon=True)
               for i in range(workers - 1)]
    for helper in helpers:
        helper.start()
    work()
    for helper in helpers:
        helper.join()
    return phi


def _warm_up_ensemble() -> tuple[FlatTree, ...]:
    # one tree of each split kind, so every branch of the kernels is compiled
    def tree(kind: int, categories: dict[int, np.ndarray]) -> FlatTree:
        return FlatTree(
            left=np.array([1, 3, -1, -1, -1]), right=np.array([2, 4, -1, -1, -1]),
            default=np.array([1, 3, -1, -1, -1]), features=np.array([0, 1, -1, -1, -1]),
            thresholds=np.array([0.5, 0.0, 0.0, 0.0, 0.0]),
            covers=np.array([4.0, 3.0, 1.0, 2.0, 1.0]),
            values=np.array([[0.0], [0.0], [1.0], [-1.0], [2.0]]),
            missing_kinds=np.full(5, kind, dtype=np.int8), category_sets=categories,
        )

    return (tree(MISSING_TO_DEFAULT, {}), tree(MISSING_AS_ZERO, {}),
            tree(ZERO_TO_DEFAULT, {1: category_bitset([0, 2])}))


def warm_up() -> float:
    """Compile (or load from numba's on-disk cache) the linear kernels; return the ms taken.

    Runs every entry point once on a tiny ensemble: the table builder, single rows,
    blocks on the calling thread and on helper threads, and tables whose trees all run
    the classic kernel.
    """
    started = time.perf_counter()
    ensemble = build_ensemble(_warm_up_ensemble(), n_outputs=1, n_features=2,
                              output_space=OutputSpace.VALUE, float32_inputs=False)
    X = np.tile(np.array([[0.0, 1.0], [np.nan, 0.0], [1.0, 2.0]]), (PARALLEL_MIN_ROWS, 1))
    for budget in (None, 0):
        compiled = compile_ensemble(ensemble, memory_budget=budget)
        ids = np.arange(len(ensemble.roots), dtype=np.int64)
        values = compiled.node_values(ensemble.values[:, 0])
        scales = compiled.split_scales(values)
        for rows in (1, BLOCK_MIN_ROWS, len(X)):
            linear_tree_shap(X[:rows], ids, trees=compiled.trees, tables=compiled.tables,
                             values=values, scales=scales)
        roots = compiled.tables.tree_starts[ids].astype(np.int32)
        expected_value(roots, trees=compiled.trees, values=values)
        predict_trees(X, roots, trees=compiled.trees, values=values)
    return (time.perf_counter() - started) * 1000
