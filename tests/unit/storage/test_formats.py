"""Model and background formats: round trips, trusted types, refusal of code-bearing files."""

from __future__ import annotations

import functools
import importlib
import io
import pickle
import zipfile
from collections.abc import Callable
from typing import Any

import joblib
import lightgbm
import numpy as np
import pandas as pd
import pytest
import skops.io
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
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
from sklearn.impute import SimpleImputer
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import (
    FunctionTransformer,
    MinMaxScaler,
    OneHotEncoder,
    OrdinalEncoder,
    StandardScaler,
)
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

from storage.errors import ModelFormatInvalid, UntrustedModelType
from storage.formats import (
    DEFAULT_TRUSTED_TYPES,
    parse_background,
    parse_lightgbm,
    parse_skops,
    serialize_background,
)

SEED = 7


@pytest.fixture(scope="session")
def numeric_data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(SEED)
    X = rng.normal(size=(300, 4))
    X[:, 3] = rng.integers(0, 5, size=300)  # small integer codes: a categorical column
    y_binary = (X[:, 0] + 0.5 * X[:, 1] + rng.normal(scale=0.3, size=300) > 0).astype(int)
    y_multi = np.digitize(X[:, 0] + X[:, 2], [-0.7, 0.7])
    y_reg = 2.0 * X[:, 0] - X[:, 1] + 0.3 * X[:, 3] + rng.normal(scale=0.1, size=300)
    return X, y_binary, y_multi, y_reg


@pytest.fixture(scope="session")
def mixed_frame() -> tuple[pd.DataFrame, np.ndarray]:
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 300),
            "income": rng.lognormal(10, 0.5, 300),
            "city": rng.choice(["paris", "lyon", "nice"], 300),
            "plan": rng.choice(["basic", "pro"], 300),
        }
    )
    frame.loc[::11, "age"] = np.nan
    y = ((frame["income"] > 22000) ^ (frame["city"] == "nice")).to_numpy(dtype=int)
    return frame, y


def _mixed_pipeline(final: Any) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer()), ("scale", StandardScaler())])
    columns = ColumnTransformer(
        [
            ("num", numeric, ["age", "income"]),
            ("city", OneHotEncoder(handle_unknown="ignore"), ["city"]),
            ("plan", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
             ["plan"]),
        ]
    )
    return Pipeline([("columns", columns), ("model", final)])


# (id, factory, target): target is the y column of numeric_data, or "mixed" for the frame.
NUMERIC_MODELS: list[tuple[str, Callable[[], Any], str]] = [
    ("hgb-classifier", lambda: HistGradientBoostingClassifier(max_iter=15, random_state=SEED),
     "binary"),
    ("hgb-classifier-multiclass",
     lambda: HistGradientBoostingClassifier(max_iter=10, random_state=SEED), "multi"),
    ("hgb-classifier-categorical",
     lambda: HistGradientBoostingClassifier(max_iter=10, categorical_features=[3],
                                            random_state=SEED), "binary"),
    ("hgb-regressor", lambda: HistGradientBoostingRegressor(max_iter=15, random_state=SEED),
     "reg"),
    ("hgb-regressor-absolute",
     lambda: HistGradientBoostingRegressor(loss="absolute_error", max_iter=10), "reg"),
    ("hgb-regressor-quantile",
     lambda: HistGradientBoostingRegressor(loss="quantile", quantile=0.8, max_iter=10), "reg"),
    ("random-forest-classifier",
     lambda: RandomForestClassifier(n_estimators=8, max_depth=5, random_state=SEED), "binary"),
    ("random-forest-regressor",
     lambda: RandomForestRegressor(n_estimators=8, max_depth=5, random_state=SEED), "reg"),
    ("extra-trees-classifier",
     lambda: ExtraTreesClassifier(n_estimators=8, max_depth=5, random_state=SEED), "multi"),
    ("extra-trees-regressor",
     lambda: ExtraTreesRegressor(n_estimators=8, max_depth=5, random_state=SEED), "reg"),
    ("gradient-boosting-classifier",
     lambda: GradientBoostingClassifier(n_estimators=10, random_state=SEED), "binary"),
    ("gradient-boosting-classifier-multiclass",
     lambda: GradientBoostingClassifier(n_estimators=5, random_state=SEED), "multi"),
    ("gradient-boosting-regressor",
     lambda: GradientBoostingRegressor(n_estimators=10, random_state=SEED), "reg"),
    ("gradient-boosting-regressor-huber",
     lambda: GradientBoostingRegressor(loss="huber", n_estimators=5, random_state=SEED), "reg"),
    ("decision-tree-classifier", lambda: DecisionTreeClassifier(random_state=SEED), "binary"),
    ("decision-tree-regressor", lambda: DecisionTreeRegressor(random_state=SEED), "reg"),
    ("logistic-regression", LogisticRegression, "binary"),
    ("logistic-regression-multiclass", LogisticRegression, "multi"),
    ("linear-regression", LinearRegression, "reg"),
    ("ridge", Ridge, "reg"),
    ("lasso", lambda: Lasso(alpha=0.01), "reg"),
    ("elastic-net", lambda: ElasticNet(alpha=0.01), "reg"),
    ("sgd-classifier", lambda: SGDClassifier(random_state=SEED), "binary"),
    ("sgd-classifier-log-loss", lambda: SGDClassifier(loss="log_loss", random_state=SEED),
     "binary"),
    ("sgd-regressor", lambda: SGDRegressor(random_state=SEED), "reg"),
    ("pipeline-scalers-logistic",
     lambda: Pipeline([("std", StandardScaler()), ("minmax", MinMaxScaler()),
                       ("model", LogisticRegression())]), "binary"),
]

MIXED_MODELS: list[tuple[str, Callable[[], Any]]] = [
    ("pipeline-columns-hgb",
     lambda: _mixed_pipeline(HistGradientBoostingClassifier(max_iter=10, random_state=SEED))),
    ("pipeline-columns-random-forest",
     lambda: _mixed_pipeline(RandomForestClassifier(n_estimators=5, random_state=SEED))),
    ("pipeline-columns-logistic", lambda: _mixed_pipeline(LogisticRegression())),
]


def _outputs(model: Any, X: Any) -> list[np.ndarray]:
    outputs = [np.asarray(model.predict(X))]
    for method in ("predict_proba", "decision_function"):
        if hasattr(model, method):
            outputs.append(np.asarray(getattr(model, method)(X)))
    return outputs


def _assert_same_predictions(original: Any, loaded: Any, X: Any) -> None:
    for expected, actual in zip(_outputs(original, X), _outputs(loaded, X), strict=True):
        np.testing.assert_array_equal(actual, expected)


@pytest.mark.parametrize(("factory", "target"), [(f, t) for _, f, t in NUMERIC_MODELS],
                         ids=[i for i, _, _ in NUMERIC_MODELS])
def test_supported_model_round_trips_with_default_trusted_types(
    numeric_data: tuple[np.ndarray, ...], factory: Callable[[], Any], target: str
) -> None:
    X, y_binary, y_multi, y_reg = numeric_data
    y = {"binary": y_binary, "multi": y_multi, "reg": y_reg}[target]
    model = factory().fit(X, y)

    loaded = parse_skops(skops.io.dumps(model), key="model.skops")

    assert type(loaded) is type(model)
    _assert_same_predictions(model, loaded, X)


@pytest.mark.parametrize("factory", [f for _, f in MIXED_MODELS],
                         ids=[i for i, _ in MIXED_MODELS])
def test_column_transformer_pipeline_round_trips_with_default_trusted_types(
    mixed_frame: tuple[pd.DataFrame, np.ndarray], factory: Callable[[], Any]
) -> None:
    frame, y = mixed_frame
    model = factory().fit(frame, y)

    loaded = parse_skops(skops.io.dumps(model), key="model.skops")

    _assert_same_predictions(model, loaded, frame)


def test_default_trusted_types_name_real_objects_without_wildcards() -> None:
    assert len(set(DEFAULT_TRUSTED_TYPES)) == len(DEFAULT_TRUSTED_TYPES)
    for name in DEFAULT_TRUSTED_TYPES:
        module_name, _, attribute = name.rpartition(".")
        assert "*" not in name
        assert getattr(importlib.import_module(module_name), attribute) is not None, name


def test_tree_model_is_refused_when_tree_type_is_not_trusted(
    numeric_data: tuple[np.ndarray, ...],
) -> None:
    X, y_binary, _, _ = numeric_data
    model = RandomForestClassifier(n_estimators=2, random_state=SEED).fit(X, y_binary)

    with pytest.raises(UntrustedModelType) as caught:
        parse_skops(skops.io.dumps(model), key="models/m/1/model.skops", trusted=[])

    assert caught.value.types == ["sklearn.tree._tree.Tree"]
    assert "models/m/1/model.skops" in str(caught.value)


def _double(values: np.ndarray) -> np.ndarray:
    return values * 2


class _Custom(TransformerMixin, BaseEstimator):  # type: ignore[misc]
    def fit(self, X: Any, y: Any = None) -> _Custom:
        return self

    def transform(self, X: Any) -> Any:
        return X


@pytest.mark.parametrize(
    ("step", "type_fragment"),
    [
        (FunctionTransformer(func=_double), "_double"),
        (FunctionTransformer(func=functools.partial(_double)), "_double"),
        (_Custom(), "_Custom"),
    ],
    ids=["function-transformer-with-custom-function", "trusted-partial-of-untrusted-function",
         "custom-class"],
)
def test_model_with_untrusted_type_is_refused_naming_the_type(
    numeric_data: tuple[np.ndarray, ...], step: Any, type_fragment: str
) -> None:
    X, y_binary, _, _ = numeric_data
    model = Pipeline([("step", step), ("model", LogisticRegression())]).fit(X, y_binary)

    with pytest.raises(UntrustedModelType) as caught:
        parse_skops(skops.io.dumps(model), key="model.skops")

    assert any(type_fragment in name for name in caught.value.types)
    assert type_fragment in str(caught.value)


_UNPICKLED: list[str] = []


class _Tripwire:
    """Records its own unpickling: a loader that runs pickle would trip it."""

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (_UNPICKLED.append, ("unpickled",))


def _joblib_bytes(obj: Any) -> bytes:
    buffer = io.BytesIO()
    joblib.dump(obj, buffer)
    return buffer.getvalue()


@pytest.mark.parametrize("encode", [pickle.dumps, _joblib_bytes], ids=["pickle", "joblib"])
@pytest.mark.parametrize("parse", [
    lambda data: parse_skops(data, key="model.skops"),
    lambda data: parse_lightgbm(data, key="model.txt"),
], ids=["skops", "lightgbm"])
def test_pickle_and_joblib_bytes_are_refused_without_unpickling(
    encode: Callable[[Any], bytes], parse: Callable[[bytes], Any]
) -> None:
    _UNPICKLED.clear()
    data = encode(_Tripwire())

    with pytest.raises(ModelFormatInvalid) as caught:
        parse(data)

    assert _UNPICKLED == []
    assert "model." in str(caught.value)


def _zip_with(name: str, content: bytes) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize(
    "data",
    [_zip_with("data.pkl", pickle.dumps({"a": 1})), _zip_with("schema.json", b"{not json"),
     _zip_with("schema.json", b'{"__class__": "x"}'), b"PK\x03\x04 truncated archive", b""],
    ids=["zip-of-pickle", "schema-not-json", "schema-incomplete", "corrupt-zip", "empty"],
)
def test_bytes_that_are_not_a_skops_archive_are_refused(data: bytes) -> None:
    with pytest.raises(ModelFormatInvalid, match=r"model\.skops"):
        parse_skops(data, key="model.skops")


def _fitted_tree(numeric_data: tuple[np.ndarray, ...]) -> DecisionTreeClassifier:
    X, y_binary, _, _ = numeric_data
    return DecisionTreeClassifier(max_depth=3, random_state=SEED).fit(X, y_binary)


def _replace_tree_nodes(model: DecisionTreeClassifier, field: str, value: int) -> None:
    tree = model.tree_
    state = tree.__getstate__()
    nodes = state["nodes"].copy()
    nodes[field][0] = value
    state["nodes"] = nodes
    rebuilt = type(tree)(tree.n_features, np.asarray(tree.n_classes), tree.n_outputs)
    rebuilt.__setstate__(state)
    model.tree_ = rebuilt


@pytest.mark.parametrize(
    ("field", "value"),
    [("left_child", 0), ("right_child", 10_000), ("feature", 99)],
    ids=["child-cycle", "child-out-of-range", "feature-out-of-range"],
)
def test_tree_with_out_of_range_indices_is_refused(
    numeric_data: tuple[np.ndarray, ...], field: str, value: int
) -> None:
    model = _fitted_tree(numeric_data)
    _replace_tree_nodes(model, field, value)

    with pytest.raises(ModelFormatInvalid, match=r"model\.skops.*tree"):
        parse_skops(skops.io.dumps(model), key="model.skops")


@pytest.mark.parametrize(("field", "value"), [("left", 1_000_000), ("feature_idx", 50)])
def test_hist_gradient_boosting_with_out_of_range_indices_is_refused(
    numeric_data: tuple[np.ndarray, ...], field: str, value: int
) -> None:
    X, y_binary, _, _ = numeric_data
    model = HistGradientBoostingClassifier(max_iter=3, random_state=SEED).fit(X, y_binary)
    model._predictors[0][0].nodes[field][0] = value

    with pytest.raises(ModelFormatInvalid, match="tree"):
        parse_skops(skops.io.dumps(model), key="model.skops")


@pytest.fixture(scope="session")
def lightgbm_model() -> tuple[lightgbm.Booster, pd.DataFrame]:
    rng = np.random.default_rng(SEED)
    frame = pd.DataFrame(
        {
            "age": rng.normal(40, 10, 400),
            "debt_ratio": rng.uniform(0, 1, 400),
            "region": pd.Categorical(rng.choice(["north", "south", "east"], 400)),
        }
    )
    y = ((frame["debt_ratio"] > 0.5) ^ (frame["region"] == "east")).astype(int)
    params = {"objective": "binary", "verbose": -1, "seed": SEED, "num_leaves": 7,
              "deterministic": True}
    booster = lightgbm.train(params, lightgbm.Dataset(frame, y), num_boost_round=20)
    return booster, frame


def test_lightgbm_text_model_round_trips_with_identical_predictions(
    lightgbm_model: tuple[lightgbm.Booster, pd.DataFrame],
) -> None:
    booster, frame = lightgbm_model
    data = booster.model_to_string().encode("utf-8")

    loaded = parse_lightgbm(data)

    np.testing.assert_array_equal(loaded.predict(frame), booster.predict(frame))
    np.testing.assert_array_equal(
        loaded.predict(frame, raw_score=True), booster.predict(frame, raw_score=True)
    )
    assert loaded.feature_name() == booster.feature_name()


@pytest.mark.parametrize(
    "data",
    [b"", b"tree\nversion=v4\nnum_class=oops\n", b"tree\n\xff\xfe", b"PK\x03\x04junk"],
    ids=["empty", "malformed", "not-utf8", "zip"],
)
def test_malformed_lightgbm_model_is_refused(data: bytes) -> None:
    with pytest.raises(ModelFormatInvalid, match=r"models/m/1/model\.txt"):
        parse_lightgbm(data, key="models/m/1/model.txt")


def test_background_round_trips_through_parquet() -> None:
    frame = pd.DataFrame(
        {
            "age": [41.0, np.nan, 23.5],
            "count": np.array([1, 2, 3], dtype="int64"),
            "zip_code": ["94110", "75001", None],
            "flag": [True, False, True],
        },
        index=[10, 20, 30],
    )

    restored = parse_background(serialize_background(frame))

    pd.testing.assert_frame_equal(restored, frame.reset_index(drop=True))


def test_unreadable_background_is_refused_naming_the_file() -> None:
    with pytest.raises(ModelFormatInvalid, match=r"background\.parquet"):
        parse_background(b"not parquet at all")
