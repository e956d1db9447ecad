"""Exact path-dependent TreeSHAP (Lundberg et al. 2018, Algorithm 2) compiled with numba.

The kernel explains one scalar output: the caller passes the roots of the trees that add
to that output and one leaf value per node. Nodes of all trees live in shared flat
arrays (see `tree_ensemble.TreeEnsemble`); children are global node indices.
"""

# numba kernels take their flat arrays positionally (no keyword-only arguments there).

from __future__ import annotations

import threading
from typing import NamedTuple

import numpy as np
from numba import njit, prange

from explainers.types import FloatMatrix, FloatVector

# How a numeric split treats a missing value (stored per node in `missing_kinds`).
MISSING_TO_DEFAULT = 0  # NaN takes the node's default child (sklearn, HGB, LightGBM "NaN")
MISSING_AS_ZERO = 1  # NaN is read as 0.0 and compared (LightGBM "None")
ZERO_TO_DEFAULT = 2  # NaN is read as 0.0 and zero takes the default child (LightGBM "Zero")

# LightGBM's kZeroThreshold: |x| at or below this counts as zero.
ZERO_THRESHOLD = 1e-35

# Below this many rows the parallel launch costs more than it saves, and single rows
# (the ingest path) must not occupy every core.
PARALLEL_MIN_ROWS = 32

# numba's workqueue threading layer aborts the process when two threads launch parallel
# kernels at once; the service explains from several threads, and one parallel launch
# already uses every core, so serialising launches costs nothing.
_PARALLEL_LOCK = threading.Lock()


class TreeArrays(NamedTuple):
    """Node arrays the kernel reads (numba passes a NamedTuple of arrays as one argument)."""

    left: np.ndarray  # int32, -1 for a leaf
    right: np.ndarray  # int32
    default: np.ndarray  # int32, child taken by a missing value
    features: np.ndarray  # int32, -1 for a leaf
    thresholds: np.ndarray  # float64, numeric split: x <= threshold goes left
    missing_kinds: np.ndarray  # int8, see MISSING_* above
    category_starts: np.ndarray  # int32, -1 for a numeric split, else offset into bitsets
    category_words: np.ndarray  # int32, number of uint32 words of the node's bitset
    category_bitsets: np.ndarray  # uint32, categories that go left
    covers: np.ndarray  # float64, weighted training samples through the node


@njit(cache=True, inline="always")
def next_node(node: int, value: float, trees: TreeArrays) -> int:
    start = trees.category_starts[node]
    if start >= 0:
        # LightGBM's categorical decision: missing and negative codes go right
        if np.isnan(value) or value < 0.0:
            return int(trees.right[node])
        code = int(value)
        word = code // 32
        if word >= trees.category_words[node]:
            return int(trees.right[node])
        if (trees.category_bitsets[start + word] >> np.uint32(code % 32)) & np.uint32(1):
            return int(trees.left[node])
        return int(trees.right[node])
    kind = trees.missing_kinds[node]
    if np.isnan(value):
        if kind == MISSING_TO_DEFAULT:
            return int(trees.default[node])
        value = 0.0
    if kind == ZERO_TO_DEFAULT and abs(value) <= ZERO_THRESHOLD:
        return int(trees.default[node])
    if value <= trees.thresholds[node]:
        return int(trees.left[node])
    return int(trees.right[node])


class PathBuffers(NamedTuple):
    """The unique feature path of Algorithm 2, one segment per visited depth."""

    features: np.ndarray  # int32, feature split on (-1 for the root element)
    zeros: np.ndarray  # fraction of cover flowing this way when the feature is unknown
    ones: np.ndarray  # 1.0 if x goes this way when the feature is known, else 0.0
    weights: np.ndarray  # permutation weights


class FrameStack(NamedTuple):
    """Pending visits of the depth-first walk (numba cannot cache recursive functions)."""

    nodes: np.ndarray
    parent_offs: np.ndarray
    depths: np.ndarray
    zeros: np.ndarray
    ones: np.ndarray
    features: np.ndarray


@njit(cache=True)
def _extend(path: PathBuffers, off: int, depth: int, zero_fraction: float, one_fraction: float,
            feature: int) -> None:
    w = path.weights
    path.features[off + depth] = feature
    path.zeros[off + depth] = zero_fraction
    path.ones[off + depth] = one_fraction
    w[off + depth] = 1.0 if depth == 0 else 0.0
    for i in range(depth - 1, -1, -1):
        w[off + i + 1] += one_fraction * w[off + i] * (i + 1) / (depth + 1)
        w[off + i] = zero_fraction * w[off + i] * (depth - i) / (depth + 1)


@njit(cache=True)
def _unwind(path: PathBuffers, off: int, depth: int, index: int) -> None:
    w = path.weights
    one_fraction = path.ones[off + index]
    zero_fraction = path.zeros[off + index]
    next_one_portion = w[off + depth]
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0.0:
            tmp = w[off + i]
            w[off + i] = next_one_portion * (depth + 1) / ((i + 1) * one_fraction)
            next_one_portion = tmp - w[off + i] * zero_fraction * (depth - i) / (depth + 1)
        else:
            w[off + i] = w[off + i] * (depth + 1) / (zero_fraction * (depth - i))
    for i in range(index, depth):
        path.features[off + i] = path.features[off + i + 1]
        path.zeros[off + i] = path.zeros[off + i + 1]
        path.ones[off + i] = path.ones[off + i + 1]


@njit(cache=True)
def _unwound_sum(path: PathBuffers, off: int, depth: int, index: int) -> float:
    w = path.weights
    one_fraction = path.ones[off + index]
    zero_fraction = path.zeros[off + index]
    next_one_portion = w[off + depth]
    total = 0.0
    for i in range(depth - 1, -1, -1):
        if one_fraction != 0.0:
            tmp = next_one_portion * (depth + 1) / ((i + 1) * one_fraction)
            total += tmp
            next_one_portion = w[off + i] - tmp * zero_fraction * (depth - i) / (depth + 1)
        else:
            total += w[off + i] / zero_fraction / ((depth - i) / (depth + 1))
    return total


@njit(cache=True)
def _copy_parent(path: PathBuffers, parent_off: int, off: int, depth: int) -> None:
    for i in range(depth):
        path.features[off + i] = path.features[parent_off + i]
        path.zeros[off + i] = path.zeros[parent_off + i]
        path.ones[off + i] = path.ones[parent_off + i]
        path.weights[off + i] = path.weights[parent_off + i]


@njit(cache=True)
def _add_leaf(phi: np.ndarray, path: PathBuffers, off: int, depth: int, leaf_value: float) -> None:
    for i in range(1, depth + 1):
        w = _unwound_sum(path, off, depth, i)
        phi[path.features[off + i]] += w * (path.ones[off + i] - path.zeros[off + i]) * leaf_value


@njit(cache=True)
def _push(frames: FrameStack, top: int, node: int, parent_off: int, depth: int,
          zero_fraction: float, one_fraction: float, feature: int) -> int:
    frames.nodes[top] = node
    frames.parent_offs[top] = parent_off
    frames.depths[top] = depth
    frames.zeros[top] = zero_fraction
    frames.ones[top] = one_fraction
    frames.features[top] = feature
    return top + 1


@njit(cache=True)
def explain_tree(root: int, x: np.ndarray, phi: np.ndarray, trees: TreeArrays,
                  values: np.ndarray, path: PathBuffers, frames: FrameStack) -> None:
    # Algorithm 2 with an explicit stack. Each visit works on its own copy of the path,
    # stacked after its parent's; a pending cold child still finds its parent's copy
    # intact because the hot subtree only writes above it.
    top = _push(frames, 0, root, 0, 0, 1.0, 1.0, -1)
    while top > 0:
        top -= 1
        node = frames.nodes[top]
        depth = frames.depths[top]
        off = frames.parent_offs[top] + depth + 1
        _copy_parent(path, frames.parent_offs[top], off, depth)
        _extend(path, off, depth, frames.zeros[top], frames.ones[top], frames.features[top])
        if trees.left[node] < 0:
            _add_leaf(phi, path, off, depth, values[node])
            continue

        split = trees.features[node]
        hot = next_node(node, x[split], trees)
        cold = trees.right[node] if hot == trees.left[node] else trees.left[node]
        incoming_zero = 1.0
        incoming_one = 1.0
        # A feature split on twice along the path is undone and redone with both fractions.
        index = 0
        while index <= depth and path.features[off + index] != split:
            index += 1
        if index != depth + 1:
            incoming_zero = path.zeros[off + index]
            incoming_one = path.ones[off + index]
            _unwind(path, off, depth, index)
            depth -= 1

        cover = trees.covers[node]
        # cold first on the stack, so the hot child is visited first
        top = _push(frames, top, cold, off, depth + 1,
                    trees.covers[cold] / cover * incoming_zero, 0.0, split)
        top = _push(frames, top, hot, off, depth + 1,
                    trees.covers[hot] / cover * incoming_zero, incoming_one, split)


@njit(cache=True)
def _explain_row(x: np.ndarray, phi: np.ndarray, roots: np.ndarray, trees: TreeArrays,
                 values: np.ndarray, max_depth: int) -> None:
    # (D+2)(D+3)/2 holds one path segment per depth of a depth-D tree (Lundberg et al.)
    size = (max_depth + 2) * (max_depth + 3) // 2 + 1
    path = PathBuffers(np.empty(size, dtype=np.int32), np.empty(size, dtype=np.float64),
                 np.empty(size, dtype=np.float64), np.empty(size, dtype=np.float64))
    # the walk keeps at most one pending sibling per depth
    n_frames = 2 * max_depth + 4
    frames = FrameStack(np.empty(n_frames, dtype=np.int64), np.empty(n_frames, dtype=np.int64),
                     np.empty(n_frames, dtype=np.int64), np.empty(n_frames, dtype=np.float64),
                     np.empty(n_frames, dtype=np.float64), np.empty(n_frames, dtype=np.int64))
    for t in range(roots.shape[0]):
        explain_tree(roots[t], x, phi, trees, values, path, frames)


@njit(cache=True)
def _shap_serial(X: np.ndarray, roots: np.ndarray, trees: TreeArrays, values: np.ndarray,
                 max_depth: int) -> np.ndarray:
    phi = np.zeros(X.shape, dtype=np.float64)
    for i in range(X.shape[0]):
        _explain_row(X[i], phi[i], roots, trees, values, max_depth)
    return phi


@njit(cache=True, parallel=True)
def _shap_parallel(X: np.ndarray, roots: np.ndarray, trees: TreeArrays, values: np.ndarray,
                   max_depth: int) -> np.ndarray:
    phi = np.zeros(X.shape, dtype=np.float64)
    for i in prange(X.shape[0]):
        _explain_row(X[i], phi[i], roots, trees, values, max_depth)
    return phi


def tree_shap(X: FloatMatrix, roots: np.ndarray, *, trees: TreeArrays, values: FloatVector,
              max_depth: int) -> FloatMatrix:
    """Return exact path-dependent SHAP values (n, M) of the trees rooted at `roots`.

    X must already be in the model's input encoding (and precision); `values` holds one
    output value per node.
    """
    X = np.ascontiguousarray(X, dtype=np.float64)
    if X.shape[0] < PARALLEL_MIN_ROWS:
        return np.asarray(_shap_serial(X, roots, trees, values, max_depth))
    with _PARALLEL_LOCK:
        return np.asarray(_shap_parallel(X, roots, trees, values, max_depth))


@njit(cache=True)
def _expectation(root: int, trees: TreeArrays, values: np.ndarray) -> float:
    # Cover-weighted mean of the leaves, with the same child fractions as the SHAP
    # recursion, so base value + attributions adds up exactly.
    stack_nodes = np.empty(trees.left.shape[0] + 1, dtype=np.int64)
    stack_weights = np.empty(trees.left.shape[0] + 1, dtype=np.float64)
    stack_nodes[0] = root
    stack_weights[0] = 1.0
    top = 1
    total = 0.0
    while top > 0:
        top -= 1
        node = stack_nodes[top]
        w = stack_weights[top]
        if trees.left[node] < 0:
            total += w * values[node]
            continue
        cover = trees.covers[node]
        for child in (trees.left[node], trees.right[node]):
            stack_nodes[top] = child
            stack_weights[top] = w * trees.covers[child] / cover
            top += 1
    return total


@njit(cache=True)
def _expected_value(roots: np.ndarray, trees: TreeArrays, values: np.ndarray) -> float:
    total = 0.0
    for t in range(roots.shape[0]):
        total += _expectation(roots[t], trees, values)
    return total


def expected_value(roots: np.ndarray, *, trees: TreeArrays, values: FloatVector) -> float:
    """Return the sum over the trees of their cover-weighted expected value."""
    return float(_expected_value(roots, trees, values))


@njit(cache=True)
def _predict(X: np.ndarray, roots: np.ndarray, trees: TreeArrays,
             values: np.ndarray) -> np.ndarray:
    out = np.zeros(X.shape[0], dtype=np.float64)
    for i in range(X.shape[0]):
        for t in range(roots.shape[0]):
            node = roots[t]
            while trees.left[node] >= 0:
                node = next_node(node, X[i, trees.features[node]], trees)
            out[i] += values[node]
    return out


def predict_trees(X: FloatMatrix, roots: np.ndarray, *, trees: TreeArrays,
                  values: FloatVector) -> FloatVector:
    """Return the sum of the trees' leaf values reached by each row."""
    return np.asarray(_predict(np.ascontiguousarray(X, dtype=np.float64), roots, trees, values))


def warm_up() -> None:
    """Compile (or load from numba's cache) every kernel on a one-split tree."""
    trees = TreeArrays(
        left=np.array([1, -1, -1], dtype=np.int32),
        right=np.array([2, -1, -1], dtype=np.int32),
        default=np.array([1, -1, -1], dtype=np.int32),
        features=np.array([0, -1, -1], dtype=np.int32),
        thresholds=np.array([0.5, 0.0, 0.0], dtype=np.float64),
        missing_kinds=np.zeros(3, dtype=np.int8),
        category_starts=np.full(3, -1, dtype=np.int32),
        category_words=np.zeros(3, dtype=np.int32),
        category_bitsets=np.zeros(1, dtype=np.uint32),
        covers=np.array([2.0, 1.0, 1.0], dtype=np.float64),
    )
    roots = np.zeros(1, dtype=np.int32)
    values = np.array([0.0, -1.0, 1.0], dtype=np.float64)
    X = np.zeros((PARALLEL_MIN_ROWS, 1), dtype=np.float64)
    tree_shap(X[:1], roots, trees=trees, values=values, max_depth=1)
    tree_shap(X, roots, trees=trees, values=values, max_depth=1)
    expected_value(roots, trees=trees, values=values)
    predict_trees(X, roots, trees=trees, values=values)
