"""Exact outputs of every single-feature move of a row through a flat tree ensemble (numba).

With all other features fixed, a tree's output as a function of one numeric feature is
piecewise constant between that feature's split thresholds. Walking each tree once along
the row's path and branching only at splits on the moving feature yields the output for
every threshold interval at once; the per-interval changes are accumulated with a
difference array. Categorical features walk each candidate category instead.
"""

# numba kernels take their flat arrays positionally (no keyword-only arguments there).

from __future__ import annotations

import numpy as np
from numba import njit

from explainers.treeshap_kernel import TreeArrays, next_node

GRID = 0  # numeric feature: slots are threshold intervals
CANDIDATES = 1  # categorical feature: slots are the model codes of its categories
FIXED = -1  # not evaluated (immutable, or never split on)


@njit(cache=True, inline="always")
def _add_leaf(target: np.ndarray, values: np.ndarray, leaf: int, base_leaf: int,
              output: int, sign: float) -> None:
    if output >= 0:
        target[output] += sign * (values[leaf, 0] - values[base_leaf, 0])
    else:
        for k in range(target.shape[0]):
            target[k] += sign * (values[leaf, k] - values[base_leaf, k])


@njit(cache=True)
def _grid_walk(x: np.ndarray, start: int, base_leaf: int, feature: int, n_slots: int,
               offset: int, output: int, trees: TreeArrays, values: np.ndarray,
               node_slot: np.ndarray, diff: np.ndarray, stack: np.ndarray) -> None:
    """Branch at splits on `feature`, follow x elsewhere; add leaf changes per interval."""
    stack[0, 0] = start
    stack[0, 1] = 0
    stack[0, 2] = n_slots
    top = 1
    while top > 0:
        top -= 1
        node = stack[top, 0]
        lo = stack[top, 1]
        hi = stack[top, 2]
        if trees.left[node] < 0:
            if node != base_leaf:
                _add_leaf(diff[offset + lo], values, node, base_leaf, output, 1.0)
                _add_leaf(diff[offset + hi], values, node, base_leaf, output, -1.0)
            continue
        if trees.features[node] == feature and node_slot[node] >= 0:
            cut = node_slot[node] + 1  # intervals below `cut` go left
            if lo < cut:
                stack[top, 0] = trees.left[node]
                stack[top, 1] = lo
                stack[top, 2] = min(hi, cut)
                top += 1
            if hi > cut:
                stack[top, 0] = trees.right[node]
                stack[top, 1] = max(lo, cut)
                stack[top, 2] = hi
                top += 1
        else:
            stack[top, 0] = next_node(node, x[trees.features[node]], trees)
            stack[top, 1] = lo
            stack[top, 2] = hi
            top += 1


@njit(cache=True)
def _single_moves(X: np.ndarray, roots: np.ndarray, tree_outputs: np.ndarray,
                  trees: TreeArrays, values: np.ndarray, node_slot: np.ndarray,
                  kinds: np.ndarray, seg_start: np.ndarray, codes: np.ndarray,
                  max_depth: int, base: np.ndarray, delta: np.ndarray) -> None:
    n_features = X.shape[1]
    n_outputs = base.shape[1]
    n_slots = delta.shape[1]
    diff = np.zeros((n_slots + n_features, n_outputs))
    seen = np.zeros(n_features, dtype=np.bool_)
    path = np.empty(max_depth + 1, dtype=np.int64)
    stack = np.empty((trees.left.shape[0] + 1, 3), dtype=np.int64)
    for s in range(X.shape[0]):
        x = X[s]
        diff[:] = 0.0
        for t in range(roots.shape[0]):
            output = tree_outputs[t]
            node = roots[t]
            depth = 0
            while trees.left[node] >= 0:
                path[depth] = node
                depth += 1
                node = next_node(node, x[trees.features[node]], trees)
            leaf = node
            if output >= 0:
                base[s, output] += values[leaf, 0]
            else:
                for k in range(n_outputs):
                    base[s, k] += values[leaf, k]
            for d in range(depth):
                start = path[d]
                f = trees.features[start]
                if kinds[f] == FIXED or seen[f]:
                    continue
                seen[f] = True
                first = seg_start[f]
                size = seg_start[f + 1] - first
                if kinds[f] == GRID:
                    _grid_walk(x, start, leaf, f, size, first + f, output, trees, values,
                               node_slot, diff, stack)
                    continue
                for c in range(size):
                    code = codes[first + c]
                    node = start
                    while trees.left[node] >= 0:
                        g = trees.features[node]
                        node = next_node(node, code if g == f else x[g], trees)
                    if node != leaf:
                        _add_leaf(delta[s, first + c], values, node, leaf, output, 1.0)
            for d in range(depth):
                seen[trees.features[path[d]]] = False
        for f in range(n_features):
            if kinds[f] != GRID:
                continue
            first = seg_start[f]
            for k in range(n_outputs):
                acc = 0.0
                for i in range(seg_start[f + 1] - first):
                    acc += diff[first + f + i, k]
                    delta[s, first + i, k] = acc


def single_move_outputs(X: np.ndarray, *, roots: np.ndarray, tree_outputs: np.ndarray,
                        trees: TreeArrays, values: np.ndarray, base_offset: np.ndarray,
                        node_slot: np.ndarray, kinds: np.ndarray, seg_start: np.ndarray,
                        codes: np.ndarray, max_depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (outputs of the rows (S, K), output changes per slot (S, n_slots, K)).

    X holds model inputs (category codes, model precision). Slot i of feature f sets f
    to threshold interval i (GRID) or to candidate code i (CANDIDATES).
    """
    n_outputs = base_offset.shape[0]
    base = np.zeros((X.shape[0], n_outputs))
    delta = np.zeros((X.shape[0], int(seg_start[-1]), n_outputs))
    _single_moves(np.ascontiguousarray(X, dtype=np.float64), roots, tree_outputs, trees,
                  values, node_slot, kinds, seg_start, codes, max_depth, base, delta)
    return base + base_offset, delta
