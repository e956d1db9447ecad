"""Flatten a LightGBM booster (through `dump_model()`) into a TreeEnsemble."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np

from explainers.errors import UnsupportedModel
from explainers.tree_ensemble import FlatTree, TreeEnsemble, build_ensemble, category_bitset
from explainers.treeshap_kernel import MISSING_AS_ZERO, MISSING_TO_DEFAULT, ZERO_TO_DEFAULT
from explainers.types import OutputSpace

_MISSING_KINDS = {"None": MISSING_AS_ZERO, "Zero": ZERO_TO_DEFAULT, "NaN": MISSING_TO_DEFAULT}


def flatten_lightgbm(booster: lightgbm.Booster, output_space: OutputSpace) -> TreeEnsemble:
    """Flatten every tree of the booster (inputs in LightGBM's own category codes)."""
    dump = booster.dump_model()
    per_iteration = int(dump["num_tree_per_iteration"])
    tree_infos = dump["tree_info"]
    # boosting=rf averages its trees instead of adding them
    scale = per_iteration / len(tree_infos) if dump.get("average_output") else 1.0
    trees = [
        _flat_tree(info["tree_structure"], scale,
                   output=i % per_iteration if per_iteration > 1 else -1)
        for i, info in enumerate(tree_infos)
    ]
    return build_ensemble(trees, n_outputs=per_iteration,
                          n_features=int(dump["max_feature_idx"]) + 1,
                          output_space=output_space, float32_inputs=False)


class _Nodes:
    """Growing node lists in depth-first order (root 0, children after their parent)."""

    def __init__(self) -> None:
        self.left: list[int] = []
        self.right: list[int] = []
        self.default: list[int] = []
        self.features: list[int] = []
        self.thresholds: list[float] = []
        self.kinds: list[int] = []
        self.covers: list[float] = []
        self.values: list[float] = []
        self.categories: dict[int, np.ndarray] = {}

    def add(self, node: dict[str, Any], scale: float) -> int:
        index = len(self.left)
        leaf = "leaf_value" in node
        self.left.append(-1)
        self.right.append(-1)
        self.default.append(-1)
        self.features.append(-1 if leaf else int(node["split_feature"]))
        self.thresholds.append(0.0)
        self.kinds.append(MISSING_TO_DEFAULT)
        # a one-leaf tree has no count; its cover never enters a fraction
        self.covers.append(float(node.get("leaf_count" if leaf else "internal_count", 1.0)))
        self.values.append(scale * float(node["leaf_value" if leaf else "internal_value"]))
        if leaf:
            return index
        if node["decision_type"] == "==":
            codes = [int(c) for c in str(node["threshold"]).split("||")]
            self.categories[index] = category_bitset(codes)
        elif node["decision_type"] == "<=":
            self.thresholds[index] = float(node["threshold"])
            self.kinds[index] = _MISSING_KINDS[node["missing_type"]]
        else:
            raise UnsupportedModel("lightgbm.Booster", f"decision {node['decision_type']!r}")
        left = self.add(node["left_child"], scale)
        right = self.add(node["right_child"], scale)
        self.left[index] = left
        self.right[index] = right
        # categorical splits send missing values right, whatever default_left says
        goes_left = bool(node["default_left"]) and index not in self.categories
        self.default[index] = left if goes_left else right
        return index


def _flat_tree(structure: dict[str, Any], scale: float, output: int) -> FlatTree:
    nodes = _Nodes()
    nodes.add(structure, scale)
    return FlatTree(
        left=np.array(nodes.left, dtype=np.int64),
        right=np.array(nodes.right, dtype=np.int64),
        default=np.array(nodes.default, dtype=np.int64),
        features=np.array(nodes.features, dtype=np.int64),
        thresholds=np.array(nodes.thresholds, dtype=np.float64),
        covers=np.array(nodes.covers, dtype=np.float64),
        values=np.array(nodes.values, dtype=np.float64)[:, None],
        missing_kinds=np.array(nodes.kinds, dtype=np.int8),
        category_sets=nodes.categories,
        output=output,
    )
