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
from explainers.treeshap_linear import (
    CATEGORICAL_KIND,
    FLAG_BITS,
    RECORD_SLOTS,
    LinearTrees,
    Scratch,
    new_scratch,
)

# Rows per block: eight float64 lanes fill two AVX2 registers (one AVX-512 register).
BLOCK_ROWS = 8


class BlockScratch(NamedTuple):
    """Work arrays of one block: lanes last, so the row loops are contiguous."""

    C: np.ndarray  # (nodes, points, BLOCK_ROWS): factor products, then leaf sums
    P: np.ndarray  # (nodes, points, BLOCK_ROWS): weighted edge terms (0 for dead edges)
    ones: np.ndarray  # (nodes + 1, BLOCK_ROWS): 1.0 where the row follows the path so far
    Z: np.ndarray  # (nodes + 1,): zero fraction of a node's edge feature down to it
    go_left: np.ndarray  # (BLOCK_ROWS,)
    live: np.ndarray  # (BLOCK_ROWS,)
    rows: np.ndarray  # (features, BLOCK_ROWS): the block's inputs, transposed
    phi: np.ndarray  # (features, BLOCK_ROWS)
    single: Scratch  # for trees left to the classic kernel


@njit(cache=True, nogil=True)
def _block_scratch(lt: LinearTrees, n_features: int) -> BlockScratch:
    n = max(lt.max_nodes, 1)
    points = max(lt.max_points, 1)
    # the last row of `ones` and entry of Z: a feature's first edge (see _forward_block)
    return BlockScratch(
        np.zeros((n, points, BLOCK_ROWS)), np.zeros((n, points, BLOCK_ROWS)),
        np.ones((n + 1, BLOCK_ROWS)), np.ones(n + 1), np.zeros(BLOCK_ROWS),
        np.zeros(BLOCK_ROWS), np.zeros((n_features, BLOCK_ROWS)),
        np.zeros((n_features, BLOCK_ROWS)), new_scratch(lt),
    )


@njit(cache=True, nogil=True)
def _decide_categorical(n: int, rows: np.ndarray, feature: int, trees: TreeArrays,
                        go_left: np.ndarray) -> None:
    # out of the split loop: next_node reads `trees` fields (see treeshap_linear._explain_row)
    for r in range(BLOCK_ROWS):
        go_left[r] = 1.0 if next_node(n, rows[feature, r], trees) == n + 1 else 0.0


@njit(cache=True, nogil=True, inline="always")
def _decide(rows: np.ndarray, feature: int, threshold: float, kind: int, default_left: float,
            go_left: np.ndarray) -> None:
    if kind == MISSING_TO_DEFAULT:
        for r in range(BLOCK_ROWS):
            value = rows[feature, r]
            below = 1.0 if value <= threshold else 0.0
            go_left[r] = default_left if np.isnan(value) else below
        return
    for r in range(BLOCK_ROWS):
        value = rows[feature, r]
        value = 0.0 if np.isnan(value) else value
        below = 1.0 if value <= threshold else 0.0
        zero = kind == ZERO_TO_DEFAULT and abs(value) <= ZERO_THRESHOLD
        go_left[r] = default_left if zero else below


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _forward_block(start: int, first: int, stop: int, ts: np.ndarray, ws: np.ndarray,
                   cold_terms: np.ndarray, floats: np.ndarray, ints: np.ndarray,
                   scales: np.ndarray, trees: TreeArrays, C: np.ndarray, P: np.ndarray,
                   ones: np.ndarray, Z: np.ndarray, g: np.ndarray, h: np.ndarray,
                   rows: np.ndarray) -> None:
    # Split records [first, stop) of the tree whose first node is `start`; the children's
    # leaf values (scales) fold into their products, as in treeshap_linear._forward.
    n_points = ts.shape[0]
    unit = Z.shape[0] - 1
    for k in range(n_points):
        for r in range(BLOCK_ROWS):
            C[0, k, r] = 1.0
    for j in range(stop - first):
        f = (first + j) * RECORD_SLOTS
        i = ints[2 * f + 6]
        lo = i + 1
        hi = ints[2 * f + 7]
        before = ints[2 * f + 8]
        code = ints[2 * f + 9]
        kind = code & 3
        if kind == CATEGORICAL_KIND:
            _decide_categorical(start + i, rows, code >> FLAG_BITS, trees, g)
        else:
            _decide(rows, code >> FLAG_BITS, floats[f], kind, float((code >> 2) & 1), g)
        old = unit if before < 0 else before
        for r in range(BLOCK_ROWS):
            h[r] = ones[old, r]
            ones[lo, r] = h[r] * g[r]
            ones[hi, r] = h[r] * (1.0 - g[r])
        e_lo = floats[f + 1]
        e_hi = floats[f + 2]
        z_old = Z[old]
        z_lo = z_old * e_lo
        z_hi = z_old * e_hi
        Z[lo] = z_lo
        Z[hi] = z_hi
        v_lo = scales[2 * (first + j)]
        v_hi = scales[2 * (first + j) + 1]
        for k in range(n_points):
            # row-independent: factors of both children, hot and cold, over the old one
            inv_old = 1.0 / (z_old + (1.0 - z_old) * ts[k])
            old_term = ws[k] * (1.0 - z_old) * inv_old
            hot_lo = z_lo + (1.0 - z_lo) * ts[k]
            hot_hi = z_hi + (1.0 - z_hi) * ts[k]
            p_hot_lo = ws[k] * (1.0 - z_lo) / hot_lo - old_term
            p_hot_hi = ws[k] * (1.0 - z_hi) / hot_hi - old_term
            p_cold = cold_terms[k] - old_term
            hot_lo *= inv_old * v_lo
            hot_hi *= inv_old * v_hi
            cold_lo = z_lo * (1.0 - ts[k]) * inv_old * v_lo
            cold_hi = z_hi * (1.0 - ts[k]) * inv_old * v_hi
            dead_lo = e_lo * v_lo
            dead_hi = e_hi * v_hi
            for r in range(BLOCK_ROWS):
                c = C[i, k, r]
                gl = g[r]
                gr = 1.0 - gl
                live = h[r]
                dead = 1.0 - live
                C[lo, k, r] = c * (live * (gl * hot_lo + gr * cold_lo) + dead * dead_lo)
                C[hi, k, r] = c * (live * (gr * hot_hi + gl * cold_hi) + dead * dead_hi)
                P[lo, k, r] = live * (gl * p_hot_lo + gr * p_cold)
                P[hi, k, r] = live * (gr * p_hot_hi + gl * p_cold)


@njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _backward_block(first: int, stop: int, n_points: int, ints: np.ndarray, C: np.ndarray,
                    P: np.ndarray, phi: np.ndarray) -> None:
    for j in range(stop - first - 1, -1, -1):
        f = (first + j) * RECORD_SLOTS
        i = ints[2 * f + 6]
        lo = i + 1
        hi = ints[2 * f + 7]
        feature = ints[2 * f + 9] >> FLAG_BITS
        for k in range(n_points):
            for r in range(BLOCK_ROWS):
                C[i, k, r] = C[lo, k, r] + C[hi, k, r]
        for k in range(n_points):
            for r in range(BLOCK_ROWS):
                phi[feature, r] += C[lo, k, r] * P[lo, k, r] + C[hi, k, r] * P[hi, k, r]


@njit(cache=True, nogil=True, error_model="numpy")
def _explain_block(X: np.ndarray, phi: np.ndarray, first_row: int, tree_ids: np.ndarray,
                   trees: TreeArrays, lt: LinearTrees, values: np.ndarray,
                   scales: np.ndarray, s: BlockScratch) -> None:
    # arrays out of the tuples once per block (see treeshap_linear._explain_row)
    tree_starts, tree_points, split_offsets = lt.tree_starts, lt.tree_points, lt.split_offsets
    floats, ints = lt.split_floats, lt.split_ints
    gl_nodes, gl_weights, gl_cold = lt.gl_nodes, lt.gl_weights, lt.gl_cold
    C, P, ones, Z, g, h = s.C, s.P, s.ones, s.Z, s.go_left, s.live
    rows, block_phi = s.rows, s.phi
    n_rows = min(BLOCK_ROWS, X.shape[0] - first_row)
    for r in range(BLOCK_ROWS):
        row = first_row + min(r, n_rows - 1)  # a short block repeats its last row
        for f in range(X.shape[1]):
            rows[f, r] = X[row, f]
            block_phi[f, r] = 0.0
    for j in range(tree_ids.shape[0]):
        t = tree_ids[j]
        start = tree_starts[t]
        if tree_starts[t + 1] - start == 1:
            continue
        n_points = tree_points[t]
        if n_points == 0:
            for r in range(n_rows):
                explain_tree(start, X[first_row + r], phi[first_row + r], trees, values,
                             s.single.path, s.single.frames)
            continue
        first, stop = split_offsets[t], split_offsets[t + 1]
        _forward_block(start, first, stop, gl_nodes[n_points, :n_points],
                       gl_weights[n_points, :n_points], gl_cold[n_points, :n_points], floats,
                       ints, scales, trees, C, P, ones, Z, g, h, rows)
        _backward_block(first, stop, n_points, ints, C, P, block_phi)
    for r in range(n_rows):
        for f in range(X.shape[1]):
            phi[first_row + r, f] += block_phi[f, r]


@njit(cache=True, nogil=True)
def explain_block_range(X: np.ndarray, phi: np.ndarray, first_block: int, stop_block: int,
                        tree_ids: np.ndarray, trees: TreeArrays, lt: LinearTrees,
                        values: np.ndarray, scales: np.ndarray) -> None:
    """Add the SHAP values of blocks [first_block, stop_block) of X's rows to phi.

    Releases the GIL: threads may run disjoint block ranges of the same arrays at once.
    """
    scratch = _block_scratch(lt, X.shape[1])
    for b in range(first_block, stop_block):
        _explain_block(X, phi, b * BLOCK_ROWS, tree_ids, trees, lt, values, scales, scratch)
