"""The flavor table picks the right adapter and explainer, and refuses what it cannot take."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from explainers.errors import InvalidClassIndex, SchemaMismatch, UnsupportedModel
from explainers.linear import LinearExplainer
from explainers.permutation import PermutationExplainer
from explainers.registry import (
    BUILDERS,
    REFERENCE_KERNEL,
    Explainable,
    build_explainable,
    warm_up,
)
from explainers.sklearn_model import SklearnModel
from explainers.tree import LightGBMTreeExplainer, TreeEnsembleExplainer
from explainers.tree_linear import LinearTreeExplainer
from explainers.types import OutputSpace, Task
from tests.unit.explainers.support import Dataset, assert_additive, numeric_schema


def test_table_has_one_row_per_flavor() -> None:
    assert sorted(BUILDERS) == ["lightgbm", "sklearn"]


@pytest.mark.parametrize(("make", "explainer_type", "space"), [
    (lambda: RandomForestClassifier(n_estimators=3, random_state=0), LinearTreeExplainer,
     OutputSpace.PROBABILITY),
    (LogisticRegression, LinearExplainer, OutputSpace.LOG_ODDS),
    (lambda: make_pipeline(StandardScaler(), LogisticRegression()), PermutationExplainer,
     OutputSpace.PROBABILITY),
    (lambda: KNeighborsClassifier(n_neighbors=5), PermutationExplainer,
     OutputSpace.PROBABILITY),
], ids=["forest", "logistic", "pipeline", "knn"])
def test_sklearn_models_are_dispatched_by_family(
        make: object, explainer_type: type, space: OutputSpace,
        datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    model = make().fit(data.X, data.y)  # type: ignore[operator]
    explainable = build_explainable("sklearn", model, data.schema, background=data.background)
    assert isinstance(explainable, Explainable)
    assert isinstance(explainable.explainer, explainer_type)
    assert explainable.model.output_space is space
    assert explainable.explainer.output_space is space
    rows = data.test_rows[:5]
    assert_additive(explainable.explainer.explain(rows),
                    explainable.model.output(rows)[:, 0])


def test_linear_model_with_custom_output_space_is_explained_in_its_margin(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["regression"]
    explainable = build_explainable("sklearn", Ridge().fit(data.X, data.y), data.schema,
                                    background=data.background)
    assert isinstance(explainable.model, SklearnModel)
    assert explainable.model.output_space is OutputSpace.VALUE


def test_unknown_flavor_and_foreign_objects_are_refused(datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    with pytest.raises(UnsupportedModel, match="unknown flavor"):
        build_explainable("xgboost", object(), data.schema, background=data.background)
    with pytest.raises(UnsupportedModel):
        build_explainable("sklearn", object(), data.schema, background=data.background)
    with pytest.raises(UnsupportedModel):
        build_explainable("lightgbm", RandomForestClassifier(), data.schema,
                          background=data.background)
    with pytest.raises(UnsupportedModel, match="not fitted"):
        build_explainable("sklearn", RandomForestClassifier(), data.schema,
                          background=data.background)


def test_classifier_without_probabilities_is_refused(datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    with pytest.raises(UnsupportedModel, match="predict_proba"):
        build_explainable("sklearn", LinearSVC().fit(data.X, data.y), data.schema,
                          background=data.background)


def test_schema_disagreeing_with_the_model_is_refused(datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(data.X, data.y)
    with pytest.raises(SchemaMismatch):
        build_explainable("sklearn", model, numeric_schema(5, Task.BINARY, (0, 1)),
                          background=data.background[:, :5])
    with pytest.raises(SchemaMismatch):
        build_explainable("sklearn", model, numeric_schema(6, Task.REGRESSION),
                          background=data.background)
    with pytest.raises(SchemaMismatch):
        build_explainable("sklearn", model, numeric_schema(6, Task.BINARY, ("no", "yes")),
                          background=data.background)


def test_empty_batch_gives_an_empty_explanation(datasets: dict[str, Dataset]) -> None:
    data = datasets["multiclass"]
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(data.X, data.y)
    explainer = build_explainable("sklearn", model, data.schema,
                                  background=data.background).explainer
    explanation = explainer.explain(np.zeros((0, 6)))
    assert explanation.values.shape == (0, 6)
    assert explanation.class_indices is not None and len(explanation.class_indices) == 0


def test_warm_up_compiles_the_kernels_and_reports_the_time() -> None:
    assert warm_up() > 0


def test_class_indices_out_of_range_or_misshaped_are_refused(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["multiclass"]
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit(data.X, data.y)
    explainer = build_explainable("sklearn", model, data.schema,
                                  background=data.background).explainer
    rows = data.test_rows[:3]
    with pytest.raises(InvalidClassIndex, match="out of range"):
        explainer.explain(rows, class_indices=np.array([0, 1, 3]))
    with pytest.raises(InvalidClassIndex, match="shape"):
        explainer.explain(rows, class_indices=np.array([0, 1]))


def test_reference_kernel_restores_the_previous_tree_shap(datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    booster = lgb.train({"objective": "binary", "verbose": -1, "num_leaves": 8},
                        lgb.Dataset(data.X, data.y, feature_name=list(data.schema.feature_names)),
                        num_boost_round=5)
    forest = RandomForestClassifier(n_estimators=3, random_state=0).fit(data.X, data.y)
    for flavor, model, reference in (("lightgbm", booster, LightGBMTreeExplainer),
                                     ("sklearn", forest, TreeEnsembleExplainer)):
        chosen = build_explainable(flavor, model, data.schema, background=data.background,
                                   tree_kernel=REFERENCE_KERNEL).explainer
        assert isinstance(chosen, reference)
        default = build_explainable(flavor, model, data.schema,
                                    background=data.background).explainer
        assert isinstance(default, LinearTreeExplainer)
        rows = data.test_rows[:6]
        np.testing.assert_allclose(default.explain(rows).values, chosen.explain(rows).values,
                                   rtol=0, atol=1e-9)
    with pytest.raises(UnsupportedModel, match="tree kernel"):
        build_explainable("sklearn", forest, data.schema, background=data.background,
                          tree_kernel="fastest")
