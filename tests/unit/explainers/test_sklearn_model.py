"""The scikit-learn adapter feeds estimators what they were fitted on; schema inference."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
)
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder

from explainers.encoding import encode_frame
from explainers.errors import ScoringFailure, UnsupportedModel
from explainers.registry import build_explainable
from explainers.sklearn_model import SklearnModel, default_output_space
from explainers.sklearn_schema import infer_sklearn_schema
from explainers.types import FeatureKind, FeatureSpec, ModelSchema, OutputSpace, Task
from tests.unit.explainers.support import Dataset


@pytest.mark.parametrize(("model", "task", "space"), [
    (LogisticRegression(), Task.BINARY, OutputSpace.LOG_ODDS),
    (LogisticRegression(), Task.MULTICLASS, OutputSpace.MARGIN),
    (GradientBoostingClassifier(), Task.BINARY, OutputSpace.LOG_ODDS),
    (HistGradientBoostingClassifier(), Task.BINARY, OutputSpace.LOG_ODDS),
    (RandomForestClassifier(), Task.BINARY, OutputSpace.PROBABILITY),
    (RandomForestClassifier(), Task.MULTICLASS, OutputSpace.PROBABILITY),
    (Pipeline([("m", LogisticRegression())]), Task.BINARY, OutputSpace.PROBABILITY),
    (HistGradientBoostingRegressor(), Task.REGRESSION, OutputSpace.VALUE),
], ids=["lr", "lr-multi", "gb", "hgb", "rf", "rf-multi", "pipeline", "hgb-regression"])
def test_default_output_space(model: object, task: Task, space: OutputSpace) -> None:
    assert default_output_space(model, task) is space


def test_outputs_and_predictions_in_each_space(datasets: dict[str, Dataset]) -> None:
    data = datasets["multiclass"]
    model = LogisticRegression().fit(data.X, data.y)
    rows = data.test_rows
    margin = SklearnModel(model, data.schema)
    probability = SklearnModel(model, data.schema, output_space=OutputSpace.PROBABILITY)
    np.testing.assert_allclose(margin.output(rows), model.decision_function(rows))
    np.testing.assert_allclose(probability.output(rows), model.predict_proba(rows))
    predictions = margin.predict(rows)
    np.testing.assert_array_equal(predictions.class_indices, model.predict(rows))
    np.testing.assert_allclose(predictions.scores, model.predict_proba(rows).max(axis=1))
    with pytest.raises(UnsupportedModel):
        SklearnModel(model, data.schema, output_space=OutputSpace.VALUE)


def test_frame_fitted_estimator_gets_its_column_order() -> None:
    rng = np.random.default_rng(2)
    frame = pd.DataFrame({"b": rng.normal(size=200), "a": rng.normal(size=200)})
    y = (frame["a"] > frame["b"]).astype(int)
    model = RandomForestClassifier(n_estimators=3, random_state=0).fit(frame, y)
    schema = ModelSchema((FeatureSpec("a", FeatureKind.NUMERIC),
                          FeatureSpec("b", FeatureKind.NUMERIC)), Task.BINARY, (0, 1))
    adapter = SklearnModel(model, schema)
    encoded = frame[["a", "b"]].to_numpy()
    np.testing.assert_allclose(adapter.output(encoded)[:, 0], model.predict_proba(frame)[:, 1])


def test_numeric_categories_reach_the_estimator_as_values() -> None:
    schema = ModelSchema((FeatureSpec("tier", FeatureKind.CATEGORICAL, (10, 20, 40)),),
                         Task.REGRESSION)
    model = HistGradientBoostingRegressor(max_iter=2).fit(np.array([[10.0], [40.0]] * 20),
                                                          np.arange(40.0))
    adapter = SklearnModel(model, schema)
    np.testing.assert_array_equal(adapter.numeric_input(np.array([[0.0], [2.0], [np.nan]])),
                                  [[10.0], [40.0], [np.nan]])


def test_schema_inference_reads_encoders_and_frame() -> None:
    rng = np.random.default_rng(3)
    frame = pd.DataFrame({
        "size": rng.normal(size=120),
        "colour": rng.choice(["red", "blue"], 120),
        "grade": rng.choice([3, 1, 2], 120),
    })
    y = rng.choice(["no", "yes"], 120)
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([("onehot", OneHotEncoder(), ["colour", "grade"])],
                                      remainder="passthrough")),
        ("model", LogisticRegression()),
    ]).fit(frame, y)
    schema = infer_sklearn_schema(pipeline, frame)
    assert [f.kind for f in schema.features] == [FeatureKind.NUMERIC, FeatureKind.CATEGORICAL,
                                                 FeatureKind.CATEGORICAL]
    assert schema.features[1].categories == ("blue", "red")
    assert schema.features[2].categories == (1, 2, 3)
    assert (schema.task, schema.classes) == (Task.BINARY, ("no", "yes"))
    without_frame = infer_sklearn_schema(pipeline)
    assert without_frame.features[2].categories == (1, 2, 3)
    adapter = SklearnModel(pipeline, schema)
    np.testing.assert_allclose(adapter.output(encode_frame(frame, schema))[:, 0],
                               pipeline.predict_proba(frame)[:, 1])


def test_schema_inference_for_numpy_fitted_regressor(datasets: dict[str, Dataset]) -> None:
    data = datasets["regression"]
    model = HistGradientBoostingRegressor(max_iter=3).fit(data.X, data.y)
    schema = infer_sklearn_schema(model)
    assert schema.feature_names == tuple(f"x{j}" for j in range(7))
    assert schema.task is Task.REGRESSION and schema.classes == ()


def test_scoring_failure_keeps_the_raw_value_out_of_the_error() -> None:
    frame = pd.DataFrame({"zip": ["94110", "10001"] * 20, "size": np.arange(40.0)})
    y = np.array([0, 1] * 20)
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([("onehot", OneHotEncoder(), ["zip"])],
                                      remainder="passthrough")),
        ("model", LogisticRegression()),
    ]).fit(frame, y)
    schema = ModelSchema((FeatureSpec("zip", FeatureKind.CATEGORICAL,
                                      ("94110", "10001", "secret-zip")),
                          FeatureSpec("size", FeatureKind.NUMERIC)), Task.BINARY, (0, 1))
    adapter = SklearnModel(pipeline, schema)
    with pytest.raises(ScoringFailure) as caught:
        adapter.output(np.array([[2.0, 1.0]]))
    assert caught.value.error_type == "ValueError"
    assert "secret-zip" not in str(caught.value)
    assert caught.value.__cause__ is None and caught.value.__suppress_context__


@pytest.fixture(scope="module")
def reordered_frame() -> tuple[pd.DataFrame, np.ndarray, ModelSchema]:
    rng = np.random.default_rng(12)
    frame = pd.DataFrame({"b": rng.normal(size=300), "c": rng.normal(size=300),
                          "a": rng.normal(size=300)})
    y = (2 * frame["a"] - frame["b"] + 0.3 * frame["c"] > 0).astype(int)
    schema = ModelSchema(tuple(FeatureSpec(n, FeatureKind.NUMERIC) for n in ("a", "b", "c")),
                         Task.BINARY, (0, 1))
    return frame, y.to_numpy(), schema


@pytest.mark.parametrize("make", [
    lambda: RandomForestClassifier(n_estimators=4, max_depth=4, random_state=0),
    LogisticRegression,
], ids=["forest", "logistic"])
def test_attributions_land_on_the_right_feature_when_column_orders_differ(
        make: object, reordered_frame: tuple[pd.DataFrame, np.ndarray, ModelSchema]) -> None:
    shap = pytest.importorskip("shap")
    frame, y, schema = reordered_frame
    model = make().fit(frame, y)  # type: ignore[operator]
    encoded = frame[["a", "b", "c"]].to_numpy()
    explainable = build_explainable("sklearn", model, schema, background=encoded[-60:])
    explanation = explainable.explainer.explain(encoded[:20])
    if isinstance(model, LogisticRegression):
        reference = shap.LinearExplainer(model, frame.iloc[-60:]).shap_values(frame.iloc[:20])
    else:
        reference = shap.TreeExplainer(model).shap_values(frame.iloc[:20])[:, :, 1]
    by_name = pd.DataFrame(reference, columns=frame.columns)[["a", "b", "c"]].to_numpy()
    np.testing.assert_allclose(explanation.values, by_name, rtol=1e-6, atol=1e-9)
