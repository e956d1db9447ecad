"""LightGBM: our adapter, explainer and flattened kernel equal LightGBM's own pred_contrib.

The reference is always LightGBM fed the way it was trained (a pandas frame with
category columns, or the integer codes), so the comparison also checks our encoding and
the index → LightGBM code mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest

from explainers.encoding import encode_frame, encode_rows
from explainers.errors import SchemaMismatch
from explainers.lightgbm_model import LightGBMModel, infer_lightgbm_schema
from explainers.lightgbm_trees import flatten_lightgbm
from explainers.permutation import PermutationExplainer
from explainers.registry import build_explainable
from explainers.tree import LightGBMTreeExplainer, TreeEnsembleExplainer
from explainers.tree_linear import LinearTreeExplainer
from explainers.types import FeatureKind, FeatureSpec, ModelSchema, OutputSpace, Task
from tests.unit.explainers.support import Dataset, assert_additive

PARAMS = {"verbose": -1, "num_leaves": 8, "min_data_in_leaf": 5, "min_data_per_group": 5,
          "cat_smooth": 1.0, "seed": 0, "deterministic": True, "num_threads": 1}


@dataclass(frozen=True)
class Trained:
    """A booster, its schema, encoded rows, and the same rows as LightGBM was fed."""

    booster: lgb.Booster
    schema: ModelSchema
    encoded: np.ndarray
    native: pd.DataFrame | np.ndarray


def _train(params: dict[str, object], data: pd.DataFrame | np.ndarray, y: np.ndarray,
           **dataset: object) -> lgb.Booster:
    booster = lgb.train({**PARAMS, **params}, lgb.Dataset(data, y, **dataset),
                        num_boost_round=20)
    # what the service loads: the text model, never the in-memory object
    return lgb.Booster(model_str=booster.model_to_string())


def _numeric(data: Dataset, params: dict[str, object]) -> Trained:
    booster = _train(params, data.X, data.y, feature_name=list(data.schema.feature_names))
    return Trained(booster, data.schema, data.X[:60], data.X[:60])


def _mixed_frame(seed: int, n: int = 500) -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(seed)
    colour = rng.choice(["red", "green", "blue", "teal"], n)
    frame = pd.DataFrame({
        "income": rng.normal(50, 10, n),
        "colour": pd.Categorical(colour, categories=["blue", "green", "red", "teal"]),
        "age": rng.integers(18, 80, n).astype(float),
        "plan": rng.choice([0, 1, 2, 5, 7], n),
    })
    frame.loc[rng.random(n) < 0.1, "colour"] = np.nan
    frame.loc[rng.random(n) < 0.1, "income"] = np.nan
    logit = (0.08 * (frame["income"].fillna(50) - 50) + 1.2 * (colour == "red")
             - 0.8 * (frame["plan"] == 5) + 0.5 * (frame["plan"] == 2))
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    return frame, y


def _pandas_categorical() -> Trained:
    frame, y = _mixed_frame(11)
    booster = _train({"objective": "binary"}, frame, y, categorical_feature=["colour", "plan"])
    schema = infer_lightgbm_schema(booster, frame)
    return Trained(booster, schema, encode_frame(frame.iloc[:60], schema), frame.iloc[:60])


def _integer_codes() -> Trained:
    frame, y = _mixed_frame(12)
    codes = frame.assign(colour=frame["colour"].cat.codes.replace(-1, np.nan)).astype(float)
    matrix = codes.to_numpy()
    booster = _train({"objective": "binary"}, matrix, y, categorical_feature=[1, 3])
    schema = infer_lightgbm_schema(booster, codes.set_axis(booster.feature_name(), axis=1))
    encoded = encode_frame(codes.set_axis(booster.feature_name(), axis=1).iloc[:60], schema)
    return Trained(booster, schema, encoded, matrix[:60])


CASES: dict[str, Callable[[dict[str, Dataset]], Trained]] = {
    "binary": lambda d: _numeric(d["binary_nan"], {"objective": "binary"}),
    "multiclass": lambda d: _numeric(d["multiclass"], {"objective": "multiclass",
                                                       "num_class": 3}),
    "regression": lambda d: _numeric(d["regression_nan"], {"objective": "regression"}),
    "poisson": lambda d: _numeric(d["regression_nan"], {"objective": "poisson"}),
    "zero_as_missing": lambda d: _numeric(d["binary_nan"], {"objective": "binary",
                                                            "zero_as_missing": True}),
    "pandas_categorical": lambda d: _pandas_categorical(),
    "integer_codes": lambda d: _integer_codes(),
}


@pytest.fixture(scope="module", params=list(CASES))
def trained(request: pytest.FixtureRequest, datasets: dict[str, Dataset]) -> Trained:
    return CASES[request.param](datasets)


def _reference(trained: Trained, classes: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    n, n_features = trained.encoded.shape
    contrib = np.asarray(trained.booster.predict(trained.native, pred_contrib=True))
    contrib = contrib.reshape(n, trained.schema.n_outputs, n_features + 1)
    picked = contrib[np.arange(n), np.zeros(n, dtype=int) if classes is None else classes]
    return picked[:, :n_features], picked[:, n_features]


def _raw(trained: Trained, classes: np.ndarray | None) -> np.ndarray:
    raw = np.asarray(trained.booster.predict(trained.native, raw_score=True))
    raw = raw.reshape(len(trained.encoded), -1)
    return raw[:, 0] if classes is None else raw[np.arange(len(raw)), classes]


def test_native_explainer_equals_pred_contrib_on_native_input(trained: Trained) -> None:
    model = LightGBMModel(trained.booster, trained.schema)
    explanation = LightGBMTreeExplainer(model).explain(trained.encoded)
    values, base = _reference(trained, explanation.class_indices)
    np.testing.assert_allclose(explanation.values, values, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(explanation.base_values, base, rtol=1e-9, atol=1e-12)
    assert_additive(explanation, _raw(trained, explanation.class_indices))


def test_flattened_booster_through_our_kernel_equals_pred_contrib(trained: Trained) -> None:
    model = LightGBMModel(trained.booster, trained.schema)
    ensemble = flatten_lightgbm(trained.booster, model.output_space)
    explainer = TreeEnsembleExplainer(ensemble, model, probe=trained.encoded)
    explanation = explainer.explain(trained.encoded)
    values, base = _reference(trained, explanation.class_indices)
    np.testing.assert_allclose(explanation.values, values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(explanation.base_values, base, rtol=1e-6, atol=1e-9)
    assert_additive(explanation, _raw(trained, explanation.class_indices))


def test_registry_picks_the_linear_kernel_equal_to_pred_contrib(trained: Trained) -> None:
    explainable = build_explainable("lightgbm", trained.booster, trained.schema,
                                    background=trained.encoded)
    explainer = explainable.explainer
    assert isinstance(explainer, LinearTreeExplainer)
    assert explainer.kernel == "linear_treeshap"
    explanation = explainer.explain(trained.encoded)
    values, base = _reference(trained, explanation.class_indices)
    np.testing.assert_allclose(explanation.values, values, rtol=0, atol=1e-9)
    np.testing.assert_allclose(explanation.base_values, base, rtol=0, atol=1e-9)
    assert_additive(explanation, _raw(trained, explanation.class_indices))


def test_predictions_equal_booster_predict(trained: Trained) -> None:
    predictions = LightGBMModel(trained.booster, trained.schema).predict(trained.encoded)
    expected = np.asarray(trained.booster.predict(trained.native))
    if trained.schema.task is Task.REGRESSION:
        np.testing.assert_allclose(predictions.scores, expected)
        assert predictions.probabilities is None
    elif trained.schema.task is Task.BINARY:
        np.testing.assert_allclose(predictions.scores, expected)
        assert predictions.probabilities is not None
        np.testing.assert_allclose(predictions.probabilities.sum(axis=1), 1.0)
    else:
        np.testing.assert_allclose(predictions.probabilities, expected)
        np.testing.assert_array_equal(predictions.class_indices, expected.argmax(axis=1))


def test_single_row_raw_scores_are_lightgbms_bit_for_bit(trained: Trained) -> None:
    # one row goes through LightGBM's fast single-row API, batches through predict()
    model = LightGBMModel(trained.booster, trained.schema)
    expected = _raw_all(trained)
    for i in range(len(trained.encoded)):
        single = model.output(trained.encoded[i : i + 1])
        np.testing.assert_array_equal(single, expected[i : i + 1])
    np.testing.assert_array_equal(model.output(trained.encoded[:7]), expected[:7])


def test_single_row_scores_stay_exact_from_many_threads(trained: Trained) -> None:
    model = LightGBMModel(trained.booster, trained.schema)
    expected = _raw_all(trained)
    rows = list(range(len(trained.encoded))) * 8

    def score(i: int) -> np.ndarray:
        return model.output(trained.encoded[i : i + 1])[0]

    with ThreadPoolExecutor(max_workers=4) as pool:
        scored = list(pool.map(score, rows))
    np.testing.assert_array_equal(np.array(scored), expected[rows])


def _raw_all(trained: Trained) -> np.ndarray:
    raw = np.asarray(trained.booster.predict(trained.native, raw_score=True))
    return raw.reshape(len(trained.encoded), trained.schema.n_outputs)


def test_output_space_follows_the_objective(datasets: dict[str, Dataset]) -> None:
    spaces = {name: LightGBMModel(CASES[name](datasets).booster,
                                  CASES[name](datasets).schema).output_space
              for name in ("binary", "multiclass", "regression", "poisson")}
    assert spaces == {"binary": OutputSpace.LOG_ODDS, "multiclass": OutputSpace.MARGIN,
                      "regression": OutputSpace.VALUE, "poisson": OutputSpace.MARGIN}


def test_schema_is_inferred_from_pandas_categories() -> None:
    trained = _pandas_categorical()
    schema = trained.schema
    assert schema.feature_names == ("income", "colour", "age", "plan")
    assert [f.kind for f in schema.features] == [FeatureKind.NUMERIC, FeatureKind.CATEGORICAL,
                                                 FeatureKind.NUMERIC, FeatureKind.CATEGORICAL]
    assert schema.features[1].categories == ("blue", "green", "red", "teal")
    assert schema.features[3].categories == (0, 1, 2, 5, 7)
    assert (schema.task, schema.classes) == (Task.BINARY, (0, 1))


def test_schema_of_integer_codes_keeps_the_code_values() -> None:
    schema = _integer_codes().schema
    assert schema.features[3].kind is FeatureKind.CATEGORICAL
    assert schema.features[3].categories == (0, 1, 2, 5, 7)


def test_json_records_explain_like_the_frame() -> None:
    trained = _pandas_categorical()
    frame = trained.native
    assert isinstance(frame, pd.DataFrame)
    records = [
        {"income": None if pd.isna(r.income) else r.income,
         "colour": None if pd.isna(r.colour) else r.colour,
         "age": int(r.age), "plan": str(r.plan)}  # "5" must match the integer category 5
        for r in frame.itertuples()
    ]
    encoded = encode_rows(records, trained.schema)
    np.testing.assert_array_equal(np.isnan(encoded), np.isnan(trained.encoded))
    np.testing.assert_allclose(encoded, trained.encoded)


def test_unseen_category_is_explained_as_missing() -> None:
    trained = _pandas_categorical()
    model = LightGBMModel(trained.booster, trained.schema)
    record = {"income": 55.0, "colour": "purple", "age": 40, "plan": 7}
    explanation = LightGBMTreeExplainer(model).explain(encode_rows([record], trained.schema))
    native = pd.DataFrame({"income": [55.0], "colour": pd.Categorical(
        [None], categories=["blue", "green", "red", "teal"]), "age": [40.0], "plan": [7]})
    contrib = trained.booster.predict(native, pred_contrib=True)
    np.testing.assert_allclose(explanation.values[0], contrib[0, :-1], atol=1e-12)


def test_registry_uses_the_linear_kernel_and_falls_back_for_linear_trees(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["regression"]
    flat = build_explainable("lightgbm", _numeric(data, {"objective": "regression"}).booster,
                             data.schema, background=data.background)
    assert isinstance(flat.explainer, LinearTreeExplainer)
    linear = _train({"objective": "regression", "linear_tree": True}, data.X, data.y,
                    feature_name=list(data.schema.feature_names))
    fallback = build_explainable("lightgbm", linear, data.schema, background=data.background)
    assert isinstance(fallback.explainer, PermutationExplainer)
    explanation = fallback.explainer.explain(data.test_rows[:5])
    assert_additive(explanation, linear.predict(data.test_rows[:5]))


def test_schema_with_other_feature_names_is_refused(datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    booster = _numeric(data, {"objective": "binary"}).booster
    renamed = ModelSchema(tuple(FeatureSpec(f"f{j}", FeatureKind.NUMERIC) for j in range(6)),
                          Task.BINARY, (0, 1))
    with pytest.raises(SchemaMismatch, match="feature 0"):
        LightGBMModel(booster, renamed)
