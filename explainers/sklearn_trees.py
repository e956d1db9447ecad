"""Flatten scikit-learn tree models (trees, forests, gradient boosting) into a TreeEnsemble.

The constant part of a boosted model (the init estimator of GradientBoosting, the
baseline of HistGradientBoosting) is not read here: `TreeEnsembleExplainer` derives it
from the model's own output, which also proves the flattening reproduces the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingClassifier,
    GradientBoostingRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.exceptions import NotFittedError
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)
from sklearn.utils.validation import check_is_fitted

from explainers.errors import UnsupportedModel
from explainers.tree_ensemble import FlatTree, TreeEnsemble, build_ensemble
from explainers.types import OutputSpace

SINGLE_TREES = (DecisionTreeClassifier, DecisionTreeRegressor, ExtraTreeClassifier,
                ExtraTreeRegressor)
FORESTS = (RandomForestClassifier, RandomForestRegressor, ExtraTreesClassifier,
           ExtraTreesRegressor)
BOOSTED = (GradientBoostingClassifier, GradientBoostingRegressor)
HIST_BOOSTED = (HistGradientBoostingClassifier, HistGradientBoostingRegressor)
SKLEARN_TREE_MODELS = SINGLE_TREES + FORESTS + BOOSTED + HIST_BOOSTED

# Losses of HistGradientBoostingRegressor whose raw output is the log of the prediction.
_LOG_LINK_LOSSES = frozenset({"poisson", "gamma"})


def is_sklearn_tree_model(estimator: object) -> bool:
    """Tell whether `flatten_sklearn_trees` knows this estimator's type."""
    return isinstance(estimator, SKLEARN_TREE_MODELS)


def flatten_sklearn_trees(estimator: object) -> TreeEnsemble:
    """Flatten a fitted scikit-learn tree model; raise UnsupportedModel for anything else."""
    if is_sklearn_tree_model(estimator):
        try:
            check_is_fitted(estimator)
        except NotFittedError as exc:
            raise UnsupportedModel(type(estimator).__name__, "the estimator is not fitted") from exc
    if isinstance(estimator, SINGLE_TREES):
        return _forest(estimator, [estimator])
    if isinstance(estimator, FORESTS):
        return _forest(estimator, list(estimator.estimators_))
    if isinstance(estimator, BOOSTED):
        return _gradient_boosting(estimator)
    if isinstance(estimator, HIST_BOOSTED):
        return _hist_gradient_boosting(estimator)
    raise UnsupportedModel(type(estimator).__name__, "not a scikit-learn tree model")


def _sklearn_tree(tree: object, values: np.ndarray, output: int = -1) -> FlatTree:
    left = np.asarray(tree.children_left, dtype=np.int64)  # type: ignore[attr-defined]
    right = np.asarray(tree.children_right, dtype=np.int64)  # type: ignore[attr-defined]
    # Trees fitted before missing-value support send NaN left, as their predict did.
    go_left = getattr(tree, "missing_go_to_left", None)
    go_left = np.ones(len(left), dtype=bool) if go_left is None else np.asarray(go_left, bool)
    return FlatTree(
        left=left,
        right=right,
        default=np.where(go_left, left, right),
        features=np.where(left < 0, -1, tree.feature),  # type: ignore[attr-defined]
        thresholds=np.asarray(tree.threshold, dtype=np.float64),  # type: ignore[attr-defined]
        covers=np.asarray(tree.weighted_n_node_samples,  # type: ignore[attr-defined]
                          dtype=np.float64),
        values=values,
        output=output,
    )


def _tree_value(estimator: object) -> np.ndarray:
    tree = estimator.tree_  # type: ignore[attr-defined]
    value = np.asarray(tree.value, dtype=np.float64)
    if value.shape[1] != 1:
        raise UnsupportedModel(type(estimator).__name__, "multi-output trees")
    return value[:, 0, :]


def _forest(model: object, estimators: Sequence[object]) -> TreeEnsemble:
    name = type(model).__name__
    classifier = hasattr(model, "classes_")
    if classifier and np.ndim(model.classes_) != 1:  # type: ignore[attr-defined]
        raise UnsupportedModel(name, "multi-output classification")
    n_classes = len(model.classes_) if classifier else 1  # type: ignore[attr-defined]
    trees = []
    for estimator in estimators:
        value = _tree_value(estimator)
        if classifier:
            # predict_proba normalises each leaf's class weights, then averages the trees
            totals = value.sum(axis=1, keepdims=True)
            value = np.divide(value, totals, out=np.zeros_like(value), where=totals > 0)
            if n_classes == 2:
                value = value[:, 1:]
        trees.append(_sklearn_tree(estimator.tree_,  # type: ignore[attr-defined]
                                   value / len(estimators)))
    return build_ensemble(
        trees, n_outputs=1 if n_classes <= 2 else n_classes,
        n_features=int(model.n_features_in_),  # type: ignore[attr-defined]
        output_space=OutputSpace.PROBABILITY if classifier else OutputSpace.VALUE,
        float32_inputs=True,
    )


def _gradient_boosting(model: object) -> TreeEnsemble:
    estimators = np.asarray(model.estimators_)  # type: ignore[attr-defined]
    rate = float(model.learning_rate)  # type: ignore[attr-defined]
    per_class = estimators.shape[1] > 1
    trees = [
        _sklearn_tree(estimators[i, k].tree_, _tree_value(estimators[i, k]) * rate,
                      output=k if per_class else -1)
        for i in range(estimators.shape[0]) for k in range(estimators.shape[1])
    ]
    return build_ensemble(
        trees, n_outputs=estimators.shape[1],
        n_features=int(model.n_features_in_),  # type: ignore[attr-defined]
        output_space=_boosted_space(model, per_class), float32_inputs=True,
    )


def _boosted_space(model: object, per_class: bool) -> OutputSpace:
    if not hasattr(model, "classes_"):
        loss = getattr(model, "loss", "")
        return OutputSpace.MARGIN if loss in _LOG_LINK_LOSSES else OutputSpace.VALUE
    if per_class or getattr(model, "loss", "log_loss") != "log_loss":
        return OutputSpace.MARGIN
    return OutputSpace.LOG_ODDS


def _hist_gradient_boosting(model: object) -> TreeEnsemble:
    name = type(model).__name__
    categorical = getattr(model, "is_categorical_", None)
    if categorical is not None and np.any(categorical):
        # Bitset splits on HGB's internal category codes: left to the permutation explainer.
        raise UnsupportedModel(name, "categorical splits of HistGradientBoosting")
    # `_predictors` is the only access to HGB's fitted trees (shap reads it the same way).
    predictors = model._predictors  # type: ignore[attr-defined]
    per_class = len(predictors[0]) > 1
    trees = []
    for iteration in predictors:
        for k, predictor in enumerate(iteration):
            trees.append(_hist_tree(predictor.nodes, output=k if per_class else -1))
    return build_ensemble(
        trees, n_outputs=len(predictors[0]),
        n_features=int(model.n_features_in_),  # type: ignore[attr-defined]
        output_space=_boosted_space(model, per_class), float32_inputs=False,
    )


def _hist_tree(nodes: np.ndarray, output: int) -> FlatTree:
    leaf = nodes["is_leaf"].astype(bool)
    left = np.where(leaf, -1, nodes["left"].astype(np.int64))
    right = np.where(leaf, -1, nodes["right"].astype(np.int64))
    return FlatTree(
        left=left,
        right=right,
        default=np.where(nodes["missing_go_to_left"].astype(bool), left, right),
        features=np.where(leaf, -1, nodes["feature_idx"]),
        thresholds=nodes["num_threshold"].astype(np.float64),
        covers=nodes["count"].astype(np.float64),
        values=nodes["value"].astype(np.float64)[:, None],
        output=output,
    )
