"""The linear kernel over blocks of rows: one walk of a tree serves `BLOCK_ROWS` rows.

Explaining one row spends most of its time walking the tree (loads, branches), little on
the polynomial values. A block shares the walk and every row-independent quantity (the
factors, their quotients) among its rows and keeps the per-row work in fixed-width loops
that the compiler turns into SIMD. The hot/cold choice of each row is a 0/1 multiplier,
not a branch: `x * 1 + y * 0` is exactly `x`, so blocks give the same numbers as single
rows up to the order of the roundings.
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
    TreeArrays,
    explain_tree,
    next_node,
)
from explainers.treeshap_linear import LinearTrees, Scratch, new_scratch

# Rows per block: eight float64 lanes fill two AVX2 registers (one AVX-512 register).
BLOCK_ROWS = 8


class BlockScratch(NamedTuple):
    """Work arrays of one block: lanes last, so the row loops are contiguous."""

    C: np.ndarray  # (nodes, points, BLOCK_ROWS): factor products, then leaf sums
    P: np.ndarray  # (nodes, points, BLOCK_ROWS): weighted edge terms (0 for dead edges)
    ones: np.ndarray  # (nodes, BLOCK_ROWS): 1.0 where the row follows the path so far
    go_left: np.ndarray  # (BLOCK_ROWS,)
    live: np.ndarray  # (BLOCK_ROWS,)
    rows: np.ndarray  # (features, BLOCK_ROWS): the block's inputs, transposed
    phi: np.ndarray  # (features, BLOCK_ROWS)
    single: Scratch  # for trees left to the classic kernel


@njit(cache=True, nogil=True)
def _block_scratch(lt: LinearTrees, n_features: int) -> BlockScratch:
    n = max(lt.max_nodes, 1)
    points = max(lt.max_points, 1)
    return BlockScratch(
        np.zeros((n, points, BLOCK_ROWS)), np.zeros((n, points, BLOCK_ROWS)),
        np.zeros((n, BLOCK_ROWS)), np.zeros(BLOCK_ROWS), np.zeros(BLOCK_ROWS),
        np.zeros((n_features, BLOCK_ROWS)), np.zeros((n_features, BLOCK_ROWS)),
        new_scratch(lt),
    )


@njit(cache=True, nogil=True)
def _decide(n: int, xs: np.ndarray, trees: TreeArrays, go_left: np.ndarray) -> None:
    if trees.category_starts[n] >= 0:
        for r in range(BLOCK_ROWS):
            go_left[r] = 1.0 if next_node(n, xs[r], trees) == n + 1 else 0.0
        return
    threshold = trees.thresholds[n]
    default_left = 1.0 if trees.default[n] == n + 1 else 0.0
    kind = trees.missing_kinds[n]
    if kind == MISSING_TO_DEFAULT:
        for r in range(BLOCK_ROWS):
            value = xs[r]
            below = 1.0 if value <= threshold else 0.0
            go_left[r] = default_left if np.isnan(value) else below
        return
    for r in range(BLOCK_ROWS):
        value = xs[r]
        value = 0.0 if np.isnan(value) else value
        below = 1.0 if value <= threshold else 0.0
        zero = kind == ZERO_TO_DEFAULT and abs(value) <= ZERO_THRESHOLD
        go_left[r] = default_left if zero else below


@njit(cache=True, nogil=True)
def _forward_block(t: int, trees: TreeArrays, lt: LinearTrees, s: BlockScratch) -> None:
    start = lt.tree_starts[t]
    e0 = lt.edge_offsets[t]
    n_points = lt.tree_points[t]
    ts = lt.gl_nodes[n_points]
    ws = lt.gl_weights[n_points]
    cold_terms = lt.gl_cold[n_points]
    C = s.C
    P = s.P
    ones = s.ones
    g = s.go_left
    h = s.live
    for k in range(n_points):
        for r in range(BLOCK_ROWS):
            C[0, k, r] = 1.0
    for n in range(start, lt.tree_starts[t + 1]):
        right = trees.right[n]
        if right < 0:
            continue
        i = n - start
        lo = i + 1
        hi = right - start
        _decide(n, s.rows[trees.features[n]], trees, g)
        before = lt.prev_same[e0 + lo]
        for r in range(BLOCK_ROWS):
            h[r] = 1.0 if before < 0 else ones[before, r]
            ones[lo, r] = h[r] * g[r]
            ones[hi, r] = h[r] * (1.0 - g[r])
        z_lo = lt.z_after[e0 + lo]
        z_hi = lt.z_after[e0 + hi]
        e_lo = lt.z_edge[e0 + lo]
        e_hi = lt.z_edge[e0 + hi]
        z_old = lt.z_before[e0 + lo]
        for k in range(n_points):
            # row-independent: factors of both children, hot and cold, over the old one
            inv_old = 1.0 / (z_old + (1.0 - z_old) * ts[k])
            old_term = ws[k] * (1.0 - z_old) * inv_old
            hot_lo = z_lo + (1.0 - z_lo) * ts[k]
            hot_hi = z_hi + (1.0 - z_hi) * ts[k]
            p_hot_lo = ws[k] * (1.0 - z_lo) / hot_lo - old_term
            p_hot_hi = ws[k] * (1.0 - z_hi) / hot_hi - old_term
            p_cold = cold_terms[k] - old_term
            hot_lo *= inv_old
            hot_hi *= inv_old
            cold_lo = z_lo * (1.0 - ts[k]) * inv_old
            cold_hi = z_hi * (1.0 - ts[k]) * inv_old
            for r in range(BLOCK_ROWS):
                c = C[i, k, r]
                gl = g[r]
                gr = 1.0 - gl
                live = h[r]
                dead = 1.0 - live
                C[lo, k, r] = c * (live * (gl * hot_lo + gr * cold_lo) + dead * e_lo)
                C[hi, k, r] = c * (live * (gr * hot_hi + gl * cold_hi) + dead * e_hi)
                P[lo, k, r] = live * (gl * p_hot_lo + gr * p_cold)
                P[hi, k, r] = live * (gr * p_hot_hi + gl * p_cold)


@njit(cache=True, nogil=True)
def _backward_block(t: int, trees: TreeArrays, lt: LinearTrees, values: np.ndarray,
                    s: BlockScratch) -> None:
    start = lt.tree_starts[t]
    e0 = lt.edge_offsets[t]
    n_points = lt.tree_points[t]
    C = s.C
    P = s.P
    for n in range(lt.tree_starts[t + 1] - 1, start, -1):
        i = n - start
        right = trees.right[n]
        if right < 0:
            value = values[n]
            for k in range(n_points):
                for r in range(BLOCK_ROWS):
                    C[i, k, r] *= value
        else:
            hi = right - start
            for k in range(n_points):
                for r in range(BLOCK_ROWS):
                    C[i, k, r] = C[i + 1, k, r] + C[hi, k, r]
        phi = s.phi[lt.edge_features[e0 + i]]
        for k in range(n_points):
            for r in range(BLOCK_ROWS):
                phi[r] += C[i, k, r] * P[i, k, r]


@njit(cache=True, nogil=True)
def _explain_block(X: np.ndarray, phi: np.ndarray, first: int, tree_ids: np.ndarray,
                   trees: TreeArrays, lt: LinearTrees, values: np.ndarray,
                   s: BlockScratch) -> None:
    n_rows = min(BLOCK_ROWS, X.shape[0] - first)
    for r in range(BLOCK_ROWS):
        row = first + min(r, n_rows - 1)  # a short block repeats its last row
        for f in range(X.shape[1]):
            s.rows[f, r] = X[row, f]
            s.phi[f, r] = 0.0
    for j in range(tree_ids.shape[0]):
        t = tree_ids[j]
        start = lt.tree_starts[t]
        if lt.tree_starts[t + 1] - start == 1:
            continue
        if lt.tree_points[t] == 0:
            for r in range(n_rows):
                explain_tree(start, X[first + r], phi[first + r], trees, values,
                             s.single.path, s.single.frames)
            continue
        _forward_block(t, trees, lt, s)
        _backward_block(t, trees, lt, values, s)
    for r in range(n_rows):
        for f in range(X.shape[1]):
            phi[first + r, f] += s.phi[f, r]


@njit(cache=True, nogil=True)
def explain_block_range(X: np.ndarray, phi: np.ndarray, first_block: int, stop_block: int,
                        tree_ids: np.ndarray, trees: TreeArrays, lt: LinearTrees,
                        values: np.ndarray) -> None:
    """Add the SHAP values of blocks [first_block, stop_block) of X's rows to phi.

    Releases the GIL: threads may run disjoint block ranges of the same arrays at once.
    """
    scratch = _block_scratch(lt, X.shape[1])
    for b in range(first_block, stop_block):
        _explain_block(X, phi, b * BLOCK_ROWS, tree_ids, trees, lt, values, scratch)
