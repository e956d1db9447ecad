"""Random flat ensembles: both TreeSHAP kernels equal Shapley values computed by brute force.

The reference enumerates every coalition S of at most 8 features and uses the definition
path-dependent TreeSHAP explains: v(S) follows the row at splits on features in S and
averages the children by cover elsewhere. The split rules (missing-value kinds, default
directions, categorical bitsets) are re-implemented here from their documentation, not
taken from the kernels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from explainers.tree_ensemble import FlatTree, TreeEnsemble, build_ensemble, category_bitset
from explainers.treeshap_fast import linear_tree_shap
from explainers.treeshap_kernel import expected_value, tree_shap
from explainers.treeshap_tables import compile_ensemble
from explainers.types import OutputSpace

MISSING_TO_DEFAULT, MISSING_AS_ZERO, ZERO_TO_DEFAULT = 0, 1, 2


@dataclass
class Node:
    """A node of a random tree before it is numbered."""

    value: float
    cover: float
    feature: int = -1
    threshold: float = 0.0
    kind: int = MISSING_TO_DEFAULT
    categories: frozenset[int] | None = None
    default_left: bool = True
    left: Node | None = None
    right: Node | None = None


@st.composite
def _node(draw: st.DrawFn, n_features: int, depth: int) -> Node:
    if depth == 0 or draw(st.integers(0, 4)) == 0:
        return Node(draw(st.floats(-5, 5)), float(draw(st.integers(1, 30))))
    left = draw(_node(n_features, depth - 1))
    right = draw(_node(n_features, depth - 1))
    categorical = draw(st.integers(0, 4)) == 0
    return Node(
        value=0.0, cover=left.cover + right.cover,
        feature=draw(st.integers(0, n_features - 1)),
        threshold=draw(st.sampled_from([-1.0, 0.0, 0.5, 1.0])),
        kind=draw(st.sampled_from([MISSING_TO_DEFAULT, MISSING_AS_ZERO, ZERO_TO_DEFAULT])),
        categories=frozenset(draw(st.sets(st.integers(0, 40), min_size=1, max_size=4)))
        if categorical else None,
        default_left=draw(st.booleans()), left=left, right=right,
    )


def _flat(root: Node) -> FlatTree:
    # breadth-first numbering: the kernels must not rely on the input's node order
    order = [root]
    for node in order:
        if node.left is not None and node.right is not None:
            order += [node.left, node.right]
    index = {id(node): i for i, node in enumerate(order)}

    def child(node: Node, side: Node | None) -> int:
        return -1 if side is None else index[id(side)]

    left = np.array([child(n, n.left) for n in order])
    right = np.array([child(n, n.right) for n in order])
    return FlatTree(
        left=left, right=right,
        default=np.where([n.default_left for n in order], left, right),
        features=np.array([n.feature for n in order]),
        thresholds=np.array([n.threshold for n in order]),
        covers=np.array([n.cover for n in order]),
        values=np.array([[n.value] for n in order]),
        missing_kinds=np.array([n.kind for n in order], dtype=np.int8),
        category_sets={i: category_bitset(sorted(n.categories)) for i, n in enumerate(order)
                       if n.categories is not None},
    )


def _goes_left(node: Node, value: float) -> bool:
    if node.categories is not None:
        # LightGBM: missing and negative codes go right, like codes outside the set
        return not (math.isnan(value) or value < 0) and int(value) in node.categories
    if math.isnan(value):
        if node.kind == MISSING_TO_DEFAULT:
            return node.default_left
        value = 0.0
    if node.kind == ZERO_TO_DEFAULT and abs(value) <= 1e-35:
        return node.default_left
    return value <= node.threshold


def _expectation(node: Node, x: np.ndarray, known: int) -> float:
    if node.left is None or node.right is None:
        return node.value
    if known >> node.feature & 1:
        return _expectation(node.left if _goes_left(node, x[node.feature]) else node.right,
                            x, known)
    return (node.left.cover * _expectation(node.left, x, known)
            + node.right.cover * _expectation(node.right, x, known)) / node.cover


def _brute_force(roots: list[Node], x: np.ndarray) -> tuple[np.ndarray, float]:
    m = len(x)
    v = [sum(_expectation(r, x, s) for r in roots) for s in range(1 << m)]
    phi = np.zeros(m)
    for i in range(m):
        for s in range(1 << m):
            if s >> i & 1:
                continue
            size = bin(s).count("1")
            weight = math.factorial(size) * math.factorial(m - size - 1) / math.factorial(m)
            phi[i] += weight * (v[s | 1 << i] - v[s])
    return phi, v[0]


_VALUES = st.sampled_from([-1.5, -1.0, -0.5, 0.0, 1e-40, 0.5, 1.0, 2.0, 3.0, 33.0,
                           float("nan")])


@st.composite
def _case(draw: st.DrawFn) -> tuple[list[Node], TreeEnsemble, np.ndarray]:
    n_features = draw(st.integers(1, 8))
    roots = draw(st.lists(_node(n_features, 5), min_size=1, max_size=3))
    ensemble = build_ensemble([_flat(r) for r in roots], n_outputs=1, n_features=n_features,
                              output_space=OutputSpace.VALUE, float32_inputs=False)
    n_rows = draw(st.integers(1, 4))
    X = np.array([[draw(_VALUES) for _ in range(n_features)] for _ in range(n_rows)])
    return roots, ensemble, X


@settings(max_examples=60, deadline=None, database=None)
@given(case=_case(), budget=st.sampled_from([None, 0]))
def test_kernels_equal_brute_force_shapley_values(
        case: tuple[list[Node], TreeEnsemble, np.ndarray], budget: int | None) -> None:
    roots, ensemble, X = case
    expected = [_brute_force(roots, x) for x in X]
    reference = np.array([phi for phi, _ in expected])
    compiled = compile_ensemble(ensemble, memory_budget=budget)
    ids = np.arange(len(roots), dtype=np.int64)
    values = compiled.node_values(ensemble.values[:, 0])
    # 1-2 rows run one by one, 3+ in blocks, 32+ in parallel blocks
    tiled = np.tile(X, (40 // len(X) + 1, 1))[:40]
    for rows, want in ((X, reference), (tiled, np.tile(reference, (40 // len(X) + 1, 1))[:40])):
        phi = linear_tree_shap(rows, ids, trees=compiled.trees, tables=compiled.tables,
                               values=values, scales=compiled.split_scales(values))
        np.testing.assert_allclose(phi, want, rtol=0, atol=1e-9)
    classic = tree_shap(X, ensemble.roots, trees=ensemble.trees,
                        values=ensemble.values[:, 0], max_depth=ensemble.max_depth)
    np.testing.assert_allclose(classic, reference, rtol=0, atol=1e-9)
    base = expected_value(compiled.tables.tree_starts[ids].astype(np.int32),
                          trees=compiled.trees, values=values)
    assert abs(base - expected[0][1]) <= 1e-9
