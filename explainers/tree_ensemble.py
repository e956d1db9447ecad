"""Tree ensembles as flat node arrays, the input of the TreeSHAP kernels.

All trees share one set of node arrays (children are global node indices), so a kernel
selects the trees of one output by their roots. Leaf values are stored already scaled
(learning rate, 1/n_trees for forests), so an output is `base_offset` plus the sum of the
leaf values the row reaches. The layout carries everything an exact path-dependent or a
Linear TreeSHAP kernel needs: structure, split rule, missing-value rule, covers, values.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from explainers.errors import UnsupportedModel
from explainers.treeshap_kernel import MISSING_TO_DEFAULT, TreeArrays
from explainers.types import FloatMatrix, FloatVector, OutputSpace


@dataclass(frozen=True, slots=True, eq=False)
class FlatTree:
    """One tree with local node indices (children -1 for a leaf), before concatenation."""

    left: np.ndarray
    right: np.ndarray
    default: np.ndarray  # child taken by a missing value
    features: np.ndarray  # -1 for a leaf
    thresholds: np.ndarray
    covers: np.ndarray
    values: FloatMatrix  # (n_nodes, K)
    missing_kinds: np.ndarray | None = None  # None: all MISSING_TO_DEFAULT
    category_sets: dict[int, np.ndarray] = field(default_factory=dict)  # node → uint32 words
    output: int = -1  # output this tree adds to; -1: one value column per output


@dataclass(frozen=True, slots=True, eq=False)
class TreeEnsemble:
    """A flattened ensemble: output k = base_offset[k] + sum of its trees' leaf values."""

    trees: TreeArrays
    values: FloatMatrix  # (n_nodes, K): K == n_outputs, or 1 when each tree has an output
    roots: np.ndarray  # int32 (n_trees,)
    tree_outputs: np.ndarray  # int32 (n_trees,), -1 when the tree has one column per output
    max_depth: int
    base_offset: FloatVector  # (n_outputs,)
    n_features: int
    output_space: OutputSpace
    float32_inputs: bool  # the model compares float32-rounded inputs (sklearn's trees)

    @property
    def n_outputs(self) -> int:
        """Number of outputs (classes for multiclass, else one)."""
        return int(self.base_offset.shape[0])

    def output_trees(self, output: int) -> tuple[np.ndarray, FloatVector]:
        """Return the roots of the trees adding to `output` and their per-node values."""
        if np.all(self.tree_outputs < 0):
            return self.roots, np.ascontiguousarray(self.values[:, output])
        keep = self.tree_outputs == output
        return np.ascontiguousarray(self.roots[keep]), np.ascontiguousarray(self.values[:, 0])

    def model_precision(self, X: FloatMatrix) -> FloatMatrix:
        """Round inputs the way the model does before comparing them with thresholds."""
        if self.float32_inputs:
            return X.astype(np.float32).astype(np.float64)
        return np.ascontiguousarray(X, dtype=np.float64)

    def with_feature_positions(self, positions: np.ndarray) -> TreeEnsemble:
        """Return a copy whose splits index features by `positions[model column]`.

        Used when the model's input columns are in another order than the schema's, so
        the kernel can read rows (and write attributions) in schema order.
        """
        features = self.trees.features
        remapped = np.where(features < 0, -1, np.asarray(positions)[np.maximum(features, 0)])
        trees = self.trees._replace(features=remapped.astype(np.int32))
        return dataclasses.replace(self, trees=trees)

    def with_base_offset(self, base_offset: FloatVector) -> TreeEnsemble:
        """Return a copy with another constant added to each output."""
        return dataclasses.replace(self, base_offset=np.asarray(base_offset, dtype=np.float64))


def build_ensemble(trees: Sequence[FlatTree], *, n_outputs: int, n_features: int,
                   output_space: OutputSpace, float32_inputs: bool) -> TreeEnsemble:
    """Concatenate flat trees into one ensemble (base offset zero)."""
    if not trees:
        raise UnsupportedModel("tree ensemble", "the model has no trees")
    sizes = np.array([len(t.left) for t in trees], dtype=np.int64)
    starts = np.concatenate(([0], np.cumsum(sizes)[:-1]))
    bitsets, category_starts, category_words = _concatenate_categories(trees, starts,
                                                                       int(sizes.sum()))

    def shifted(children: np.ndarray, start: int) -> np.ndarray:
        return np.where(children < 0, -1, children + start)

    arrays = TreeArrays(
        left=np.concatenate([shifted(t.left, s) for t, s in zip(trees, starts, strict=True)]
                            ).astype(np.int32),
        right=np.concatenate([shifted(t.right, s) for t, s in zip(trees, starts, strict=True)]
                             ).astype(np.int32),
        default=np.concatenate(
            [shifted(t.default, s) for t, s in zip(trees, starts, strict=True)]
        ).astype(np.int32),
        features=np.concatenate([t.features for t in trees]).astype(np.int32),
        thresholds=np.concatenate([t.thresholds for t in trees]).astype(np.float64),
        missing_kinds=np.concatenate([
            t.missing_kinds if t.missing_kinds is not None
            else np.full(len(t.left), MISSING_TO_DEFAULT) for t in trees
        ]).astype(np.int8),
        category_starts=category_starts,
        category_words=category_words,
        category_bitsets=bitsets,
        covers=np.concatenate([t.covers for t in trees]).astype(np.float64),
    )
    return TreeEnsemble(
        trees=arrays,
        values=np.ascontiguousarray(np.concatenate([t.values for t in trees]),
                                    dtype=np.float64),
        roots=starts.astype(np.int32),
        tree_outputs=np.array([t.output for t in trees], dtype=np.int32),
        max_depth=max(tree_depth(t.left, t.right) for t in trees),
        base_offset=np.zeros(n_outputs, dtype=np.float64),
        n_features=n_features,
        output_space=output_space,
        float32_inputs=float32_inputs,
    )


def _concatenate_categories(trees: Sequence[FlatTree], starts: np.ndarray,
                            n_nodes: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    category_starts = np.full(n_nodes, -1, dtype=np.int32)
    category_words = np.zeros(n_nodes, dtype=np.int32)
    words: list[np.ndarray] = []
    offset = 0
    for tree, start in zip(trees, starts, strict=True):
        for node, bits in tree.category_sets.items():
            category_starts[start + node] = offset
            category_words[start + node] = len(bits)
            words.append(bits.astype(np.uint32))
            offset += len(bits)
    bitsets = np.concatenate(words) if words else np.zeros(1, dtype=np.uint32)
    return bitsets.astype(np.uint32), category_starts, category_words


def tree_depth(left: np.ndarray, right: np.ndarray) -> int:
    """Return the depth of a tree given local child arrays (root = node 0, depth 0)."""
    depth = 0
    frontier = np.array([0])
    while True:
        inner = frontier[left[frontier] >= 0]
        if inner.size == 0:
            return depth
        frontier = np.concatenate((left[inner], right[inner]))
        depth += 1


def category_bitset(categories: Sequence[int]) -> np.ndarray:
    """Pack non-negative category codes into uint32 words (bit c of word c // 32)."""
    codes = np.asarray(categories, dtype=np.int64)
    words = np.zeros(int(codes.max()) // 32 + 1 if codes.size else 1, dtype=np.uint32)
    for code in codes:
        words[code // 32] |= np.uint32(1) << np.uint32(code % 32)
    return words
