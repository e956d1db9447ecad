"""Model-agnostic SHAP: exact equals shap.ExactExplainer; sampled is additive and stable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from explainers.encoding import encode_frame
from explainers.permutation import PermutationExplainer
from explainers.registry import build_explainable
from explainers.sklearn_model import SklearnModel
from explainers.sklearn_schema import infer_sklearn_schema
from explainers.types import FeatureKind, OutputSpace, Task
from tests.unit.explainers.support import Dataset, assert_additive, numeric_schema

shap = pytest.importorskip("shap")


def _mixed_frame(n: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    city = rng.choice(["paris", "lyon", "nice"], n).astype(object)
    city[rng.random(n) < 0.1] = np.nan
    frame = pd.DataFrame({
        "amount": rng.lognormal(3, 0.5, n),
        "tenure": rng.integers(0, 30, n).astype(float),
        "city": city,
        "channel": rng.choice(["web", "app", "shop", "phone"], n),
        "score": rng.normal(size=n),
    })
    frame.loc[rng.random(n) < 0.1, "tenure"] = np.nan
    logit = (0.05 * frame["amount"] - 0.08 * frame["tenure"].fillna(10)
             + 1.0 * (frame["channel"] == "app") - 0.7 * (frame["city"] == "nice")
             + frame["score"])
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


@pytest.fixture(scope="module")
def pipeline_case() -> tuple[Pipeline, pd.DataFrame, np.ndarray, SklearnModel]:
    frame, y = _mixed_frame(400, 21)
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    pipeline = Pipeline([
        ("prepare", ColumnTransformer([
            ("numeric", numeric, ["amount", "tenure", "score"]),
            ("categories", OneHotEncoder(handle_unknown="ignore"), ["city", "channel"]),
        ])),
        ("classify", LogisticRegression()),
    ]).fit(frame, y)
    schema = infer_sklearn_schema(pipeline, frame)
    explainable = build_explainable("sklearn", pipeline, schema,
                                    background=encode_frame(frame.iloc[-60:], schema))
    assert isinstance(explainable.model, SklearnModel)
    return pipeline, frame, encode_frame(frame, schema), explainable.model


def test_pipeline_schema_marks_string_columns_categorical(
        pipeline_case: tuple[Pipeline, pd.DataFrame, np.ndarray, SklearnModel]) -> None:
    schema = pipeline_case[3].schema
    kinds = {f.name: f.kind for f in schema.features}
    assert kinds == {"amount": FeatureKind.NUMERIC, "tenure": FeatureKind.NUMERIC,
                     "city": FeatureKind.CATEGORICAL, "channel": FeatureKind.CATEGORICAL,
                     "score": FeatureKind.NUMERIC}
    assert schema.features[2].categories == ("lyon", "nice", "paris")
    assert (schema.task, schema.classes) == (Task.BINARY, (0, 1))


def test_pipeline_scores_decoded_rows_like_the_original_frame(
        pipeline_case: tuple[Pipeline, pd.DataFrame, np.ndarray, SklearnModel]) -> None:
    pipeline, frame, encoded, model = pipeline_case
    assert np.isnan(encoded[:, 2]).any() and np.isnan(encoded[:, 1]).any()
    np.testing.assert_allclose(model.output(encoded)[:, 0],
                               pipeline.predict_proba(frame)[:, 1], rtol=1e-12)
    np.testing.assert_allclose(model.predict(encoded).scores,
                               pipeline.predict_proba(frame)[:, 1], rtol=1e-12)


def test_exact_attributions_equal_shap_exact_explainer(
        pipeline_case: tuple[Pipeline, pd.DataFrame, np.ndarray, SklearnModel]) -> None:
    _, _, encoded, model = pipeline_case
    background = encoded[-40:]
    explainer = PermutationExplainer(model, background, seed=0)
    rows = encoded[:8]
    explanation = explainer.explain(rows)
    assert (explanation.method, explanation.output_space) == ("exact_shap",
                                                              OutputSpace.PROBABILITY)

    reference = shap.ExactExplainer(lambda Z: model.output(Z)[:, 0], background)(rows)
    np.testing.assert_allclose(explanation.values, reference.values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(explanation.base_values, reference.base_values, rtol=1e-6)
    assert_additive(explanation, model.output(rows)[:, 0])


def test_sampled_path_is_exact_for_an_additive_model() -> None:
    # For an additive model every coalition gives a feature the same marginal
    # contribution, so any set of permutations must return the exact values.
    rng = np.random.default_rng(4)
    X = rng.normal(size=(300, 14))
    y = X @ rng.normal(size=14) + rng.normal(scale=0.1, size=300)
    pipeline = make_pipeline(StandardScaler(), LinearRegression()).fit(X, y)
    model = SklearnModel(pipeline, numeric_schema(14, Task.REGRESSION))
    background = X[:80]
    explanation = PermutationExplainer(model, background, seed=1).explain(X[100:110])
    assert explanation.method == "permutation_shap"
    coef = pipeline[-1].coef_ / pipeline[0].scale_
    expected = coef * (X[100:110] - background.mean(axis=0))
    np.testing.assert_allclose(explanation.values, expected, rtol=1e-8, atol=1e-9)
    assert_additive(explanation, pipeline.predict(X[100:110]))


@pytest.fixture(scope="module")
def knn_case(datasets: dict[str, Dataset]) -> tuple[SklearnModel, np.ndarray]:
    rng = np.random.default_rng(8)
    data = datasets["multiclass"]
    X = np.column_stack((data.X, rng.normal(size=(len(data.X), 6))))
    knn = KNeighborsClassifier(n_neighbors=7).fit(X, data.y)
    return SklearnModel(knn, numeric_schema(12, Task.MULTICLASS, (0, 1, 2))), X


def test_sampled_multiclass_is_additive_for_predicted_and_requested_classes(
        knn_case: tuple[SklearnModel, np.ndarray]) -> None:
    model, X = knn_case
    explainer = PermutationExplainer(model, X[-200:], seed=2, max_background=30)
    rows = X[:6]
    predicted = explainer.explain(rows)
    assert predicted.method == "permutation_shap"
    np.testing.assert_array_equal(predicted.class_indices, model.predict(rows).class_indices)
    probabilities = model.output(rows)
    assert_additive(predicted, probabilities[np.arange(6), predicted.class_indices])
    wanted = np.array([0, 1, 2, 2, 1, 0])
    requested = explainer.explain(rows, class_indices=wanted)
    assert_additive(requested, probabilities[np.arange(6), wanted])


def test_same_seed_gives_the_same_background_and_attributions(
        knn_case: tuple[SklearnModel, np.ndarray]) -> None:
    model, X = knn_case
    first = PermutationExplainer(model, X[-200:], seed=5, max_background=25)
    second = PermutationExplainer(model, X[-200:], seed=5, max_background=25)
    other = PermutationExplainer(model, X[-200:], seed=6, max_background=25)
    assert len(first.background) == 25
    np.testing.assert_array_equal(first.background, second.background)
    assert not np.array_equal(first.background, other.background)
    rows = X[:3]
    np.testing.assert_array_equal(first.explain(rows).values, second.explain(rows).values)
    # a row's attributions do not depend on the batch it came in
    np.testing.assert_allclose(first.explain(rows[1:2]).values, first.explain(rows).values[1:2],
                               rtol=1e-12)


def test_default_background_is_capped_at_one_hundred_rows(
        knn_case: tuple[SklearnModel, np.ndarray]) -> None:
    model, X = knn_case
    assert len(PermutationExplainer(model, X[:200], seed=0).background) == 100
    assert len(PermutationExplainer(model, X[:70], seed=0).background) == 70


def test_single_feature_model_gets_output_minus_base(datasets: dict[str, Dataset]) -> None:
    data = datasets["regression"]
    X = data.X[:, :1]
    model = SklearnModel(LinearRegression().fit(X, data.y), numeric_schema(1, Task.REGRESSION))
    explanation = PermutationExplainer(model, X[-50:]).explain(X[:5])
    base = model.output(X[-50:]).mean()
    np.testing.assert_allclose(explanation.values[:, 0], model.output(X[:5])[:, 0] - base)
