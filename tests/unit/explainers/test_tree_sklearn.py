"""Our TreeSHAP kernel on scikit-learn trees equals shap.TreeExplainer (the peer)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator
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
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from explainers.errors import ScoringFailure, UnsupportedModel
from explainers.registry import build_explainable
from explainers.sklearn_model import SklearnModel
from explainers.sklearn_trees import flatten_sklearn_trees
from explainers.tree import TreeEnsembleExplainer
from explainers.tree_linear import LinearTreeExplainer
from explainers.types import FeatureKind, FeatureSpec, ModelSchema, OutputSpace, Task
from tests.unit.explainers.support import Dataset, assert_additive, shap_for_class

shap = pytest.importorskip("shap")

Factory = Callable[[], BaseEstimator]

CLASSIFIERS: dict[str, Factory] = {
    "decision_tree": lambda: DecisionTreeClassifier(max_depth=6, random_state=0),
    "random_forest": lambda: RandomForestClassifier(n_estimators=8, max_depth=6, random_state=0),
    "extra_trees": lambda: ExtraTreesClassifier(n_estimators=8, max_depth=6, random_state=0),
    "gradient_boosting": lambda: GradientBoostingClassifier(n_estimators=15, max_depth=3,
                                                            random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingClassifier(max_iter=15,
                                                                     random_state=0),
}
REGRESSORS: dict[str, Factory] = {
    "decision_tree": lambda: DecisionTreeRegressor(max_depth=6, random_state=0),
    "random_forest": lambda: RandomForestRegressor(n_estimators=8, max_depth=6, random_state=0),
    "extra_trees": lambda: ExtraTreesRegressor(n_estimators=8, max_depth=6, random_state=0),
    "gradient_boosting": lambda: GradientBoostingRegressor(n_estimators=15, max_depth=3,
                                                           random_state=0),
    "hist_gradient_boosting": lambda: HistGradientBoostingRegressor(max_iter=15,
                                                                    random_state=0),
}
# Models with native missing-value support, trained on data with NaNs.
WITH_MISSING = ("decision_tree", "random_forest", "extra_trees", "hist_gradient_boosting")

CASES = (
    [(name, "binary", make) for name, make in CLASSIFIERS.items()]
    + [(name, "multiclass", make) for name, make in CLASSIFIERS.items()]
    + [(name, "regression", make) for name, make in REGRESSORS.items()]
    + [(name, "binary_nan", CLASSIFIERS[name]) for name in WITH_MISSING]
    + [(name, "regression_nan", REGRESSORS[name]) for name in WITH_MISSING]
)


@pytest.fixture(scope="module", params=CASES, ids=[f"{c[0]}-{c[1]}" for c in CASES])
def fitted(request: pytest.FixtureRequest,
           datasets: dict[str, Dataset]) -> tuple[BaseEstimator, Dataset]:
    _, data_name, make = request.param
    data = datasets[data_name]
    return make().fit(data.X, data.y), data


def test_attributions_equal_shap_tree_explainer(
        fitted: tuple[BaseEstimator, Dataset]) -> None:
    model, data = fitted
    explainable = build_explainable("sklearn", model, data.schema, background=data.background)
    assert isinstance(explainable.explainer, LinearTreeExplainer)
    assert explainable.explainer.kernel == "linear_treeshap"
    rows = data.test_rows
    explanation = explainable.explainer.explain(rows)

    reference = _reference_explainer(model)
    expected_values, expected_base = shap_for_class(
        reference.shap_values(rows, check_additivity=False), reference.expected_value,
        explanation.class_indices, len(rows))
    np.testing.assert_allclose(explanation.values, expected_values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(explanation.base_values, expected_base, rtol=0, atol=1e-9)
    assert explanation.method == "tree_shap"
    assert_additive(explanation, _explained_output(explainable.model.output(rows),
                                                   explanation.class_indices))


def test_classic_kernel_fallback_equals_shap_tree_explainer(
        fitted: tuple[BaseEstimator, Dataset]) -> None:
    model, data = fitted
    sklearn_model = SklearnModel(model, data.schema,
                                 output_space=flatten_sklearn_trees(model).output_space)
    rows = data.test_rows[:12]
    reference = _reference_explainer(model)
    for explainer in (TreeEnsembleExplainer(flatten_sklearn_trees(model), sklearn_model,
                                            probe=data.background),
                      LinearTreeExplainer(flatten_sklearn_trees(model), sklearn_model,
                                          probe=data.background, memory_budget=0)):
        explanation = explainer.explain(rows)
        expected_values, _ = shap_for_class(
            reference.shap_values(rows, check_additivity=False), reference.expected_value,
            explanation.class_indices, len(rows))
        np.testing.assert_allclose(explanation.values, expected_values, rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", list(CLASSIFIERS))
def test_requested_classes_are_explained(name: str, datasets: dict[str, Dataset]) -> None:
    data = datasets["multiclass"]
    model = CLASSIFIERS[name]().fit(data.X, data.y)
    explainable = build_explainable("sklearn", model, data.schema, background=data.background)
    rows = data.test_rows[:12]
    wanted = np.arange(len(rows), dtype=np.int64) % 3
    explanation = explainable.explainer.explain(rows, class_indices=wanted)
    np.testing.assert_array_equal(explanation.class_indices, wanted)
    assert_additive(explanation, explainable.model.output(rows)[np.arange(len(rows)), wanted])


def _reference_explainer(model: BaseEstimator) -> object:
    """shap.TreeExplainer; for multiclass GradientBoosting (which shap refuses), shap's
    own algorithm on sklearn's per-class trees, passed in shap's dict model format."""
    if not (isinstance(model, GradientBoostingClassifier) and model.n_trees_per_iteration_ > 1):
        return shap.TreeExplainer(model)
    return _StackedClasses([shap.TreeExplainer(_class_trees(model, k))
                            for k in range(model.n_trees_per_iteration_)])


def _class_trees(model: GradientBoostingClassifier, k: int) -> dict[str, object]:
    probe = np.zeros((1, model.n_features_in_))
    tree_sum = sum(est.predict(probe)[0] for est in model.estimators_[:, k])
    init = model.decision_function(probe)[0, k] - model.learning_rate * tree_sum
    trees = []
    for est in model.estimators_[:, k]:
        tree = est.tree_
        trees.append({
            "children_left": tree.children_left, "children_right": tree.children_right,
            "children_default": np.where(tree.missing_go_to_left, tree.children_left,
                                         tree.children_right),
            "features": tree.feature, "thresholds": tree.threshold,
            "values": tree.value[:, 0, :] * model.learning_rate,
            "node_sample_weight": tree.weighted_n_node_samples,
        })
    return {"trees": trees, "base_offset": init, "input_dtype": np.float32,
            "tree_output": "raw_value"}


class _StackedClasses:
    """One shap explainer per class, stacked into shap's multi-output shapes."""

    def __init__(self, explainers: list[object]) -> None:
        self._explainers = explainers
        self.expected_value = np.array([float(np.ravel(e.expected_value)[0])
                                        for e in explainers])

    def shap_values(self, X: np.ndarray, **kwargs: object) -> np.ndarray:
        return np.stack([e.shap_values(X, **kwargs) for e in self._explainers], axis=-1)


def _explained_output(outputs: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    if classes is None:
        return outputs[:, 0]
    np.testing.assert_array_equal(classes, outputs.argmax(axis=1))
    return outputs[np.arange(len(classes)), classes]


def test_output_spaces_follow_the_model_family(datasets: dict[str, Dataset]) -> None:
    binary = datasets["binary"]
    spaces = {
        name: flatten_sklearn_trees(make().fit(binary.X, binary.y)).output_space
        for name, make in CLASSIFIERS.items()
    }
    assert spaces == {
        "decision_tree": OutputSpace.PROBABILITY, "random_forest": OutputSpace.PROBABILITY,
        "extra_trees": OutputSpace.PROBABILITY, "gradient_boosting": OutputSpace.LOG_ODDS,
        "hist_gradient_boosting": OutputSpace.LOG_ODDS,
    }


def test_poisson_hist_gradient_boosting_is_explained_in_log_space(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["regression_nan"]
    model = HistGradientBoostingRegressor(loss="poisson", max_iter=15, random_state=0)
    model.fit(data.X, data.y)
    explainable = build_explainable("sklearn", model, data.schema, background=data.background)
    explanation = explainable.explainer.explain(data.test_rows)
    assert explanation.output_space is OutputSpace.MARGIN
    assert_additive(explanation, np.log(model.predict(data.test_rows)))


def test_model_fitted_on_a_frame_with_numeric_categories_is_explained_exactly() -> None:
    rng = np.random.default_rng(5)
    frame = pd.DataFrame({"size": rng.normal(size=300), "tier": rng.choice([1, 2, 5], 300)})
    y = (frame["size"] + (frame["tier"] == 5) > 0.4).astype(int)
    model = RandomForestClassifier(n_estimators=5, max_depth=4, random_state=0).fit(frame, y)
    schema = ModelSchema((FeatureSpec("size", FeatureKind.NUMERIC),
                          FeatureSpec("tier", FeatureKind.CATEGORICAL, (1, 2, 5))),
                         Task.BINARY, (0, 1))
    encoded = np.column_stack((frame["size"], frame["tier"].map({1: 0, 2: 1, 5: 2})))
    explainable = build_explainable("sklearn", model, schema, background=encoded[:50])
    explanation = explainable.explainer.explain(encoded[:30])
    reference = shap.TreeExplainer(model).shap_values(frame.iloc[:30])
    np.testing.assert_allclose(explanation.values, reference[:, :, 1], atol=1e-9)
    assert_additive(explanation, model.predict_proba(frame.iloc[:30])[:, 1])


def test_hist_gradient_boosting_with_categorical_splits_falls_back_to_permutation() -> None:
    rng = np.random.default_rng(6)
    frame = pd.DataFrame({"a": rng.normal(size=300),
                          "c": pd.Categorical(rng.choice(["x", "y", "z"], 300))})
    y = (frame["a"] + (frame["c"] == "y") > 0.3).astype(int)
    model = HistGradientBoostingClassifier(max_iter=10, random_state=0).fit(frame, y)
    schema = ModelSchema((FeatureSpec("a", FeatureKind.NUMERIC),
                          FeatureSpec("c", FeatureKind.CATEGORICAL, ("x", "y", "z"))),
                         Task.BINARY, (0, 1))
    encoded = np.column_stack((frame["a"], frame["c"].cat.codes.astype(float)))
    encoded[::9, 1] = np.nan
    explainable = build_explainable("sklearn", model, schema, background=encoded[:40])
    assert explainable.explainer.method == "exact_shap"
    explanation = explainable.explainer.explain(encoded[:20])
    decoded = frame.iloc[:20].copy()
    decoded.loc[decoded.index[::9], "c"] = np.nan
    assert_additive(explanation, model.decision_function(decoded))


def test_tree_explainer_refuses_a_model_it_does_not_reproduce(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["regression"]
    model = GradientBoostingRegressor(n_estimators=5, random_state=0).fit(data.X, data.y)
    ensemble = flatten_sklearn_trees(model)
    broken = ensemble.with_base_offset(ensemble.base_offset)
    broken.values[:] *= 2.0
    sklearn_model = SklearnModel(model, data.schema)
    with pytest.raises(UnsupportedModel, match="do not reproduce"):
        TreeEnsembleExplainer(broken, sklearn_model, probe=data.background)
    with pytest.raises(UnsupportedModel, match="do not reproduce"):
        LinearTreeExplainer(broken, sklearn_model, probe=data.background)


def test_background_missing_values_do_not_block_a_model_without_nan_support(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    model = GradientBoostingClassifier(n_estimators=5, random_state=0).fit(data.X, data.y)
    background = data.background.copy()
    background[::3, 1] = np.nan
    explainer = build_explainable("sklearn", model, data.schema,
                                  background=background).explainer
    assert isinstance(explainer, LinearTreeExplainer)
    assert_additive(explainer.explain(data.test_rows), model.decision_function(data.test_rows))
    rows = data.test_rows[:2].copy()
    rows[0, 1] = np.nan
    with pytest.raises(ScoringFailure):
        explainer.explain(rows)
