"""Build the linear kernel's per-model tables from a flat ensemble, within a memory budget."""

# numba kernels take their flat arrays positionally (no keyword-only arguments there).

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

from explainers.tree_ensemble import TreeEnsemble
from explainers.treeshap_kernel import TreeArrays
from explainers.treeshap_linear import CATEGORICAL_KIND, FLAG_BITS, LinearTrees

# Bytes per split node: its record (see SPLIT_RECORD) and its two leaf scales per output.
RECORD_BYTES = 40
SCALE_BYTES = 16


@dataclass(frozen=True, slots=True, eq=False)
class CompiledEnsemble:
    """The tables of one model and the map from their node order back to the ensemble's."""

    trees: TreeArrays  # split rules and covers in the tables' pre-order
    tables: LinearTrees
    order: np.ndarray  # int64: tables node n is ensemble node order[n]
    memory_bytes: int  # everything the tables hold (split rules, covers, split records)
    linear_trees: int  # trees on the linear kernel (the rest run the classic one)
    split_nodes: np.ndarray  # int64: the pre-order node of each split record

    def node_values(self, values: np.ndarray) -> np.ndarray:
        """Reorder per-node values of the ensemble into the tables' pre-order."""
        return np.ascontiguousarray(values[self.order], dtype=np.float64)

    def split_scales(self, node_values: np.ndarray) -> np.ndarray:
        """Per split record, its children's leaf values (1.0 for a child that splits).

        `node_values` are in the tables' pre-order (see `node_values`).
        """
        right = self.trees.right
        children = np.stack((self.split_nodes + 1, right[self.split_nodes]), axis=1)
        leaf = right[children] < 0
        return np.ascontiguousarray(np.where(leaf, node_values[children], 1.0).ravel())


@njit(cache=True)
def _preorder(left: np.ndarray, right: np.ndarray, roots: np.ndarray,
              n_nodes: int) -> np.ndarray:
    order = np.empty(n_nodes, dtype=np.int64)
    stack = np.empty(n_nodes + 1, dtype=np.int64)
    n = 0
    for root in roots:
        stack[0] = root
        top = 1
        while top > 0:
            top -= 1
            node = stack[top]
            order[n] = node
            n += 1
            if left[node] >= 0:
                stack[top] = right[node]
                stack[top + 1] = left[node]
                top += 2
    return order


@njit(cache=True)
def _edges(left: np.ndarray, right: np.ndarray, features: np.ndarray, covers: np.ndarray,
           tree_starts: np.ndarray, n_features: int) -> tuple[np.ndarray, ...]:
    # Walk each tree in pre-order keeping, per feature, the last edge on the path and the
    # feature's zero fraction so far; undo both when the walk leaves a subtree.
    n_nodes = left.shape[0]
    edge_features = np.full(n_nodes, -1, dtype=np.int32)
    prev_same = np.full(n_nodes, -1, dtype=np.int32)  # local index within the tree
    z_edge = np.ones(n_nodes, dtype=np.float64)
    z_before = np.ones(n_nodes, dtype=np.float64)
    z_after = np.ones(n_nodes, dtype=np.float64)
    n_trees = tree_starts.shape[0] - 1
    unique = np.zeros(n_trees, dtype=np.int64)  # most distinct features on a root-leaf path
    depths = np.zeros(n_trees, dtype=np.int64)
    last = np.full(n_features, -1, dtype=np.int64)
    z_cur = np.ones(n_features, dtype=np.float64)
    parent = np.full(n_nodes, -1, dtype=np.int64)
    path = np.empty(n_nodes + 1, dtype=np.int64)
    for t in range(n_trees):
        start = tree_starts[t]
        for n in range(start, tree_starts[t + 1]):
            if left[n] >= 0:
                parent[left[n]] = n
                parent[right[n]] = n
        depth = 0
        distinct = 0
        path[0] = start
        for n in range(start + 1, tree_starts[t + 1]):
            while path[depth] != parent[n]:  # leave finished subtrees, undoing their edges
                m = path[depth]
                f = edge_features[m]
                last[f] = -1 if prev_same[m] < 0 else prev_same[m] + start
                z_cur[f] = z_before[m]
                distinct -= 1 if prev_same[m] < 0 else 0
                depth -= 1
            p = parent[n]
            f = features[p]
            edge_features[n] = f
            prev_same[n] = -1 if last[f] < 0 else last[f] - start
            distinct += 1 if last[f] < 0 else 0
            z_edge[n] = covers[n] / covers[p] if covers[p] > 0 else 0.0
            z_before[n] = z_cur[f]
            z_after[n] = z_cur[f] * z_edge[n]
            last[f] = n
            z_cur[f] = z_after[n]
            depth += 1
            path[depth] = n
            unique[t] = max(unique[t], distinct)
            depths[t] = max(depths[t], depth)
        while depth > 0:
            m = path[depth]
            f = edge_features[m]
            last[f] = -1 if prev_same[m] < 0 else prev_same[m] + start
            z_cur[f] = z_before[m]
            distinct -= 1 if prev_same[m] < 0 else 0
            depth -= 1
    return prev_same, z_edge, unique, depths


def gauss_legendre(max_points: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return nodes, weights and cold-edge terms on [0, 1] for 1..max_points points."""
    nodes = np.full((max_points + 1, max(max_points, 1)), 0.5)
    weights = np.zeros_like(nodes)
    for n in range(1, max_points + 1):
        x, w = np.polynomial.legendre.leggauss(n)
        nodes[n, :n] = (x + 1.0) / 2.0
        weights[n, :n] = w / 2.0
    cold = -weights / (1.0 - nodes)
    return nodes, weights, cold


# One split of a linear tree, as the single-row kernel reads it: float64 fields first (8-byte
# aligned), then int32 node indices local to the tree and the packed feature and flags.
SPLIT_RECORD = np.dtype([
    ("threshold", np.float64), ("z_left", np.float64), ("z_right", np.float64),
    ("node", np.int32), ("right", np.int32), ("prev", np.int32), ("code", np.int32),
])
assert SPLIT_RECORD.itemsize == RECORD_BYTES


# Features a split record can name: the feature shares an int32 with FLAG_BITS of flags.
MAX_RECORD_FEATURES = 1 << (31 - FLAG_BITS)


def split_records(trees: TreeArrays, tree_starts: np.ndarray, linear: np.ndarray,
                  prev_same: np.ndarray, z_edge: np.ndarray
                  ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Pack every split of the linear trees into one 40-byte record, in pre-order.

    Returns the records as float64 and int32 views of one buffer, the first record of
    each tree, and the pre-order node of each record.
    """
    tree_of = np.repeat(np.arange(len(linear)), np.diff(tree_starts))
    nodes = np.flatnonzero((trees.right >= 0) & linear[tree_of])
    starts = tree_starts[tree_of[nodes]]
    right = trees.right[nodes].astype(np.int64)
    kind = np.where(trees.category_starts[nodes] >= 0, CATEGORICAL_KIND,
                    trees.missing_kinds[nodes]).astype(np.int32)
    default_left = (trees.default[nodes] == nodes + 1).astype(np.int32)
    record = np.zeros(len(nodes), dtype=SPLIT_RECORD)
    record["threshold"] = trees.thresholds[nodes]
    record["z_left"] = z_edge[nodes + 1]
    record["z_right"] = z_edge[right]
    record["node"] = nodes - starts
    record["right"] = right - starts
    record["prev"] = prev_same[nodes + 1]
    record["code"] = trees.features[nodes] << FLAG_BITS | default_left << 2 | kind
    per_tree = np.bincount(tree_of[nodes], minlength=len(linear))
    offsets = np.concatenate(([0], np.cumsum(per_tree))).astype(np.int64)
    raw = record.view(np.float64)
    return raw, raw.view(np.int32), offsets, nodes.astype(np.int64)


def _reordered(trees: TreeArrays, order: np.ndarray) -> TreeArrays:
    inverse = np.empty_like(order)
    inverse[order] = np.arange(len(order))

    def children(index: np.ndarray) -> np.ndarray:
        picked = index[order]
        return np.where(picked < 0, -1, inverse[np.maximum(picked, 0)]).astype(np.int32)

    return TreeArrays(
        left=children(trees.left), right=children(trees.right),
        default=children(trees.default),
        features=np.ascontiguousarray(trees.features[order]),
        thresholds=np.ascontiguousarray(trees.thresholds[order]),
        missing_kinds=np.ascontiguousarray(trees.missing_kinds[order]),
        category_starts=np.ascontiguousarray(trees.category_starts[order]),
        category_words=np.ascontiguousarray(trees.category_words[order]),
        category_bitsets=trees.category_bitsets,
        covers=np.ascontiguousarray(trees.covers[order]),
    )


def compile_ensemble(ensemble: TreeEnsemble, *, memory_budget: int | None,
                     value_copies: int = 1) -> CompiledEnsemble:
    """Build the linear kernel's tables; trees past `memory_budget` bytes stay classic.

    `value_copies` is how many per-output copies of the split scales the caller will make
    (see `CompiledEnsemble.split_scales`); the budget counts them.

    Trees are admitted smallest first, so a budget cut keeps the most trees linear. A
    budget below the split rules themselves leaves every tree on the classic kernel.
    """
    source = ensemble.trees
    order = _preorder(source.left, source.right, ensemble.roots.astype(np.int64),
                      len(source.left))
    trees = _reordered(source, order)
    sizes = np.diff(np.append(ensemble.roots, len(source.left))).astype(np.int64)
    tree_starts = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
    prev_same, z_edge, unique, depths = _edges(
        trees.left, trees.right, trees.features, trees.covers, tree_starts,
        max(ensemble.n_features, 1))
    points = np.maximum((unique + 1) // 2, 1)
    # the quadrature tables cover every tree, so they do not depend on the budget's cut
    nodes, weights, cold = gauss_legendre(int(points.max()))
    # split rules, per-tree arrays (starts, points, depths, split offsets, categorical flags)
    # and quadrature tables
    fixed_bytes = (sum(int(a.nbytes) for a in trees) + 2 * tree_starts.nbytes
                   + 3 * sizes.nbytes + nodes.nbytes + weights.nbytes + cold.nbytes)
    splits = np.add.reduceat(trees.right >= 0, tree_starts[:-1]) if len(sizes) else sizes
    tree_bytes = splits * (RECORD_BYTES + SCALE_BYTES * value_copies)
    linear = _admitted(tree_bytes, fixed_bytes, memory_budget)
    if ensemble.n_features > MAX_RECORD_FEATURES:
        linear[:] = False  # the records cannot name every feature: all trees stay classic
    floats, ints, split_offsets, split_nodes = split_records(
        trees, tree_starts, linear, prev_same, z_edge)
    tables = LinearTrees(
        tree_starts=tree_starts,
        tree_points=np.where(linear, points, 0).astype(np.int64),
        tree_depths=depths,
        split_offsets=split_offsets, split_floats=floats, split_ints=ints,
        tree_categorical=(np.add.reduceat(trees.category_starts >= 0, tree_starts[:-1]) > 0)
        & linear,
        gl_nodes=nodes, gl_weights=weights, gl_cold=cold,
        max_nodes=int(sizes.max()), max_points=int(points[linear].max(initial=1)),
        classic_depth=int(depths[~linear].max(initial=0)),
    )
    # split_ints views split_floats' buffer
    memory = sum(int(a.nbytes) for a in tables
                 if isinstance(a, np.ndarray) and a is not tables.split_ints)
    memory += sum(int(a.nbytes) for a in trees)
    return CompiledEnsemble(trees, tables, order, memory, int(linear.sum()), split_nodes)


def _admitted(tree_bytes: np.ndarray, base_bytes: int, budget: int | None) -> np.ndarray:
    linear = np.ones(len(tree_bytes), dtype=bool)
    if budget is None:
        return linear
    room = budget - base_bytes
    by_size = np.argsort(tree_bytes, kind="stable")
    cumulative = np.cumsum(tree_bytes[by_size])
    linear[by_size[cumulative > room]] = False
    return linear
