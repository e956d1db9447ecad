"""Exact path-dependent TreeSHAP in O(nodes x D) per tree: Linear TreeShap, compiled with numba.

Linear TreeShap (Yu, Bifet, Read and Xu, NeurIPS 2022) writes the Shapley weight as a
Beta integral, so a leaf l with unique path features P, zero fractions z_j (product of
the cover ratios of the splits on j) and one fractions o_j in {0, 1} (the row follows
every split on j) adds to feature i

    phi_i += v_l (o_i - z_i) * integral_0^1 prod_{j in P, j != i} (o_j t + z_j (1 - t)) dt.

The integrand is a polynomial of degree |P| - 1. We keep every polynomial as its values
at the N Gauss-Legendre nodes of [0, 1] (N = ceil(|P| / 2), exact up to degree 2N - 1)
instead of its coefficients: products and quotients become pointwise, the integral is a
weighted sum, and nothing is ever divided polynomially, which is what breaks the
coefficient form beyond depth ~12 (the paper's v2 interpolates at Chebyshev nodes for the
same reason). A split on a feature already on the path divides the old factor out and
multiplies the new one in; the edge adds the new term minus the old one, and along a leaf's
path these telescope to the term of its final factor (pointwise, hence exactly).

One tree costs a forward pass (factor products, parent to children) and a backward pass
(sums of leaf polynomials, children to parent) over its nodes in pre-order. Trees whose
tables were not built (`tree_points == 0`, see `treeshap_tables`) run the classic kernel.
"""

# numba kernels take their flat arrays positionally (no keyword-only arguments there).

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from numba import njit

from explainers.treeshap_kernel import (
    MISSING_TO_DEFAULT,
    ZERO_THRESHOLD,
    ZERO_TO_DEFAULT,
    FrameStack,
    PathBuffers,
    TreeArrays,
    explain_tree,
    next_node,
)


class LinearTrees(NamedTuple):
    """Per-model tables of the linear kernel: all trees in pre-order, built once at load.

    The trees' split rules come apart, as `TreeArrays` re-indexed so that node n's left
    child is n + 1 (numba cannot hand nested tuples of arrays to parallel loops). Each
    split of a linear tree has one record: its rule, the cover ratios of its two edges,
    its children and the nearest ancestor edge on the same feature (local node indices).
    """

    tree_starts: np.ndarray  # int64 (n_trees + 1,): first node of each tree
    tree_points: np.ndarray  # int64 (n_trees,): Gauss-Legendre points, 0 = classic kernel
    tree_depths: np.ndarray  # int64 (n_trees,): depth of each tree
    split_offsets: np.ndarray  # int64 (n_trees + 1,): first split record of each tree
    split_floats: np.ndarray  # float64: split records (treeshap_tables.SPLIT_RECORD) ...
    split_ints: np.ndarray  # int32: ... and the same buffer read as int32
    tree_categorical: np.ndarray  # bool (n_trees,): a linear tree with a categorical split
    gl_nodes: np.ndarray  # float64 (max N + 1, max N): row N holds the N nodes on [0, 1]
    gl_weights: np.ndarray  # float64: matching weights (summing to 1)
    gl_cold: np.ndarray  # float64: -w / (1 - t), the term of an edge the row does not take
    max_nodes: int  # nodes of the largest tree
    max_points: int
    classic_depth: int  # deepest tree left to the classic kernel (0: none)


@njit(cache=True, nogil=True)
def goes_left(value: float, threshold: float, kind: int, default_left: int) -> int:
    """1 if `value` takes the left child of a numeric split (`next_node`'s rule), else 0.

    Bitwise, not branching: callers index by the result (see _forward).
    """
    missing = np.isnan(value)
    zeroed = 0.0 if missing else value
    to_default = (missing & (kind == MISSING_TO_DEFAULT)) | (
        (kind == ZERO_TO_DEFAULT) & (abs(zeroed) <= ZERO_THRESHOLD))
    below = int(zeroed <= threshold)
    return int((default_left & to_default) | (below & (1 - to_default)))


# A split record (treeshap_tables.SPLIT_RECORD) is 5 float64 or 10 int32 slots:
# threshold, z_left, z_right as float64; node, right, prev, code as int32 slots 6-9.
# code = feature << FLAG_BITS | default_left << 2 | kind, kind one of MISSING_* or
# CATEGORICAL_KIND (next_node decides).
RECORD_SLOTS = 5
FLAG_BITS = 3
CATEGORICAL_KIND = 3


@njit(cache=True, nogil=True)
def _decide_categorical(t: int, x: np.ndarray, trees: TreeArrays, lt: LinearTrees,
                        decided: np.ndarray) -> None:
    # Categorical splits decide before the forward pass, out of its loop: next_node's
    # reads of `trees` inside the loop cost a sixth of a row even where never taken.
    ints = lt.split_ints
    first = lt.split_offsets[t]
    for j in range(lt.split_offsets[t + 1] - first):
        f = (first + j) * RECORD_SLOTS
        code = ints[2 * f + 9]
        if code & 3 == CATEGORICAL_KIND:
            n = lt.tree_starts[t] + ints[2 * f + 6]
            decided[j] = next_node(n, x[code >> FLAG_BITS], trees) == n + 1


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _forward(x: np.ndarray, first: int, stop: int, ts: np.ndarray, ws: np.ndarray,
             cold_terms: np.ndarray, floats: np.ndarray, ints: np.ndarray,
             scales: np.ndarray, C: np.ndarray, P: np.ndarray, Q: np.ndarray, Z: np.ndarray,
             ones: np.ndarray, live: np.ndarray, decided: np.ndarray) -> None:
    # Split records [first, stop) of one tree. C[i] = product of the path's factors at
    # node i (times v at a leaf), P[i] = weighted edge term into i, Q[i] = 1 / the factor
    # of the edge into a hot node i (its successor's old factor), Z[i] = the zero fraction
    # of i's edge feature down to i. ts, ws, cold_terms: the tree's Gauss-Legendre row.
    n_points = ts.shape[0]
    unit = Q.shape[0] - 1  # old factor, fraction and liveness of a feature's first edge
    for k in range(n_points):
        C[0, k] = 1.0
    for j in range(stop - first):
        f = (first + j) * RECORD_SLOTS
        i = ints[2 * f + 6]
        right = ints[2 * f + 7]
        before = ints[2 * f + 8]
        code = ints[2 * f + 9]
        kind = code & 3
        numeric = goes_left(x[code >> FLAG_BITS], floats[f], kind, (code >> 2) & 1)
        left = decided[j] if kind == CATEGORICAL_KIND else numeric
        # everything below indexes by `left` (0/1) instead of branching on it: the row's
        # direction is a coin flip to the branch predictor
        hot = right + left * (i + 1 - right)
        cold = i + 1 + right - hot
        old = unit if before < 0 else before
        hot_before = ones[old]
        ones[hot] = hot_before
        ones[cold] = False
        live[j] = hot_before
        z_old = Z[old]
        e_hot = floats[f + 2 - left]
        e_cold = floats[f + 1 + left]
        z_hot = z_old * e_hot
        z_cold = z_old * e_cold
        Z[hot] = z_hot
        Z[cold] = z_cold
        v_hot = scales[2 * (first + j) + 1 - left]
        v_cold = scales[2 * (first + j) + left]
        # A live edge multiplies the parent's product by v (z + (1 - z) t) / old factor
        # (hot) or v z (1 - t) / old factor (cold). A row that already left this feature's
        # path (dead edge) only shrinks it by v times the cover ratio, and the edge's term
        # cancels (P is then unused: the backward pass multiplies it by live = 0). Live or
        # dead selects by arithmetic, not a branch: 1 * a + 0 * b is exactly a for finite b.
        lv = 1.0 if hot_before else 0.0
        dv = 1.0 - lv
        hot_a = v_hot * (lv * z_hot + dv * e_hot)
        hot_b = lv * v_hot * (1.0 - z_hot)
        cold_a = v_cold * (lv * z_cold + dv * e_cold)
        cold_b = -lv * v_cold * z_cold
        w_old = 1.0 - z_old  # a feature's first edge: z_old = 1, so its old term is 0
        w_hot = 1.0 - z_hot
        for k in range(n_points):
            q = Q[old, k]
            t_k = ts[k]
            parent = C[i, k] * (lv * q + dv)
            old_term = ws[k] * w_old * q
            inv_hot = 1.0 / (z_hot + w_hot * t_k)
            Q[hot, k] = inv_hot
            C[hot, k] = parent * (hot_a + hot_b * t_k)
            P[hot, k] = ws[k] * w_hot * inv_hot - old_term
            C[cold, k] = parent * (cold_a + cold_b * t_k)
            P[cold, k] = cold_terms[k] - old_term


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _backward(phi: np.ndarray, first: int, stop: int, n_points: int, ints: np.ndarray,
              C: np.ndarray, P: np.ndarray, live: np.ndarray) -> None:
    # C[i] becomes the sum of the leaf polynomials below node i; split records bottom-up
    for j in range(stop - first - 1, -1, -1):
        f = (first + j) * RECORD_SLOTS
        i = ints[2 * f + 6]
        r = ints[2 * f + 7]
        total = 0.0
        for k in range(n_points):
            C[i, k] = C[i + 1, k] + C[r, k]
            total += C[i + 1, k] * P[i + 1, k] + C[r, k] * P[r, k]
        # both edges are live or dead together; a dead edge's P is stale but finite
        # (P starts at zero), so the 0/1 multiplier adds exactly nothing
        phi[ints[2 * f + 9] >> FLAG_BITS] += total * live[j]


class Scratch(NamedTuple):
    """Per-row work arrays, allocated once per row or chunk of rows."""

    C: np.ndarray
    P: np.ndarray
    Q: np.ndarray  # one more row than nodes, of ones (see _forward)
    Z: np.ndarray  # one more than nodes, the last 1.0 (see _forward)
    ones: np.ndarray  # one more than nodes, the last True (see _forward)
    live: np.ndarray  # per split record of the tree at hand
    decided: np.ndarray  # int64 per split record: 1 if a categorical split sends x left
    path: PathBuffers
    frames: FrameStack


@njit(cache=True, nogil=True)
def new_scratch(lt: LinearTrees) -> Scratch:
    n = max(lt.max_nodes, 1)
    points = max(lt.max_points, 1)
    # the classic kernel's buffers, sized for the deepest tree it runs
    size = (lt.classic_depth + 2) * (lt.classic_depth + 3) // 2 + 1
    n_frames = 2 * lt.classic_depth + 4
    return Scratch(
        np.empty((n, points), dtype=np.float64), np.zeros((n, points), dtype=np.float64),
        np.ones((n + 1, points), dtype=np.float64), np.ones(n + 1, dtype=np.float64),
        np.ones(n + 1, dtype=np.bool_), np.zeros(n, dtype=np.bool_),
        np.zeros(n, dtype=np.int64),
        PathBuffers(np.empty(size, dtype=np.int32), np.empty(size, dtype=np.float64),
              np.empty(size, dtype=np.float64), np.empty(size, dtype=np.float64)),
        FrameStack(np.empty(n_frames, dtype=np.int64), np.empty(n_frames, dtype=np.int64),
                np.empty(n_frames, dtype=np.int64), np.empty(n_frames, dtype=np.float64),
                np.empty(n_frames, dtype=np.float64), np.empty(n_frames, dtype=np.int64)),
    )


@njit(cache=True, nogil=True, error_model="numpy")
def _explain_row(x: np.ndarray, phi: np.ndarray, tree_ids: np.ndarray, trees: TreeArrays,
                 lt: LinearTrees, values: np.ndarray, scales: np.ndarray, s: Scratch) -> None:
    # Arrays come out of the tuples once per row, and the passes take them as plain
    # arguments: each `tuple.field` read costs numba an atomic reference-count pair, ~20
    # of them per tree when the passes unpacked the tuples themselves.
    tree_starts, tree_points, categorical = lt.tree_starts, lt.tree_points, lt.tree_categorical
    split_offsets, floats, ints = lt.split_offsets, lt.split_floats, lt.split_ints
    gl_nodes, gl_weights, gl_cold = lt.gl_nodes, lt.gl_weights, lt.gl_cold
    C, P, Q, Z, ones, live, decided = s.C, s.P, s.Q, s.Z, s.ones, s.live, s.decided
    for j in range(tree_ids.shape[0]):
        t = tree_ids[j]
        start = tree_starts[t]
        if tree_starts[t + 1] - start == 1:
            continue  # a single leaf attributes nothing
        n_points = tree_points[t]
        if n_points == 0:
            explain_tree(start, x, phi, trees, values, s.path, s.frames)
            continue
        first, stop = split_offsets[t], split_offsets[t + 1]
        if categorical[t]:
            _decide_categorical(t, x, trees, lt, decided)
        _forward(x, first, stop, gl_nodes[n_points, :n_points], gl_weights[n_points, :n_points],
                 gl_cold[n_points, :n_points], floats, ints, scales, C, P, Q, Z, ones, live,
                 decided)
        _backward(phi, first, stop, n_points, ints, C, P, live)


@njit(cache=True, nogil=True)
def _explain_rows(X: np.ndarray, phi: np.ndarray, first: int, stop: int, tree_ids: np.ndarray,
                  trees: TreeArrays, lt: LinearTrees, values: np.ndarray,
                  scales: np.ndarray) -> None:
    scratch = new_scratch(lt)
    for i in range(first, stop):
        _explain_row(X[i], phi[i], tree_ids, trees, lt, values, scales, scratch)


@njit(cache=True, nogil=True)
def shap_rows_serial(X: np.ndarray, tree_ids: np.ndarray, trees: TreeArrays, lt: LinearTrees,
                     values: np.ndarray, scales: np.ndarray) -> np.ndarray:
    """Explain the rows of X one at a time on the calling thread."""
    phi = np.zeros(X.shape, dtype=np.float64)
    _explain_rows(X, phi, 0, X.shape[0], tree_ids, trees, lt, values, scales)
    return phi
