"""Property tests: random rows (NaNs, out-of-range values) keep TreeSHAP exact and additive."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from sklearn.ensemble import HistGradientBoostingClassifier

from explainers.lightgbm_model import LightGBMModel, infer_lightgbm_schema
from explainers.lightgbm_trees import flatten_lightgbm
from explainers.registry import Explainable, build_explainable
from explainers.tree import LightGBMTreeExplainer, TreeEnsembleExplainer
from explainers.tree_linear import LinearTreeExplainer
from explainers.types import FeatureKind
from tests.unit.explainers.support import Dataset, assert_additive

shap = pytest.importorskip("shap")

_VALUES = st.one_of(st.floats(-6.0, 6.0), st.just(np.nan), st.just(0.0),
                    st.floats(-1e6, 1e6, allow_nan=False))
_ROWS = st.integers(1, 4)


def _numeric_rows(n_features: int) -> st.SearchStrategy[np.ndarray]:
    return _ROWS.flatmap(lambda n: arrays(np.float64, (n, n_features), elements=_VALUES))


@pytest.fixture(scope="module")
def hgb(datasets: dict[str, Dataset]) -> tuple[HistGradientBoostingClassifier, Explainable,
                                               object]:
    data = datasets["binary_nan"]
    model = HistGradientBoostingClassifier(max_iter=20, random_state=0).fit(data.X, data.y)
    explainable = build_explainable("sklearn", model, data.schema, background=data.background)
    return model, explainable, shap.TreeExplainer(model)


@settings(max_examples=60, deadline=None, database=None)
@given(X=_numeric_rows(6))
def test_hist_gradient_boosting_matches_shap_on_any_row(
        hgb: tuple[HistGradientBoostingClassifier, Explainable, object], X: np.ndarray) -> None:
    model, explainable, reference = hgb
    explanation = explainable.explainer.explain(X)
    expected = reference.shap_values(X, check_additivity=False)  # type: ignore[attr-defined]
    np.testing.assert_allclose(explanation.values, expected, rtol=0, atol=1e-9)
    assert_additive(explanation, model.decision_function(X))


@pytest.fixture(scope="module")
def booster() -> tuple[lgb.Booster, LightGBMModel, TreeEnsembleExplainer, Explainable]:
    rng = np.random.default_rng(9)
    n = 600
    frame = pd.DataFrame({
        "a": rng.normal(size=n), "b": rng.normal(size=n),
        "kind": pd.Categorical(rng.choice(["p", "q", "r", "s", "t"], n)),
        "c": rng.normal(size=n),
    })
    frame.loc[rng.random(n) < 0.15, "a"] = np.nan
    frame.loc[rng.random(n) < 0.1, "kind"] = np.nan
    y = ((frame["a"].fillna(0) + frame["b"] + frame["kind"].isin(["q", "s"])) > 0.5).astype(int)
    params = {"objective": "binary", "verbose": -1, "num_leaves": 8, "min_data_in_leaf": 5,
              "min_data_per_group": 5, "cat_smooth": 1.0, "num_threads": 1}
    trained = lgb.train(params, lgb.Dataset(frame, y), num_boost_round=25)
    loaded = lgb.Booster(model_str=trained.model_to_string())
    schema = infer_lightgbm_schema(loaded, frame)
    model = LightGBMModel(loaded, schema)
    flat = TreeEnsembleExplainer(flatten_lightgbm(loaded, model.output_space), model)
    linear = build_explainable("lightgbm", loaded, schema, background=np.zeros((1, 4)))
    return loaded, model, flat, linear


_CATEGORY = st.one_of(st.integers(0, 4).map(float), st.just(np.nan))


@st.composite
def _mixed_rows(draw: st.DrawFn) -> np.ndarray:
    n = draw(_ROWS)
    X = draw(arrays(np.float64, (n, 4), elements=_VALUES))
    X[:, 2] = [draw(_CATEGORY) for _ in range(n)]
    return X


@settings(max_examples=60, deadline=None, database=None)
@given(X=_mixed_rows())
def test_lightgbm_linear_classic_and_native_agree_with_pred_contrib_on_any_row(
        booster: tuple[lgb.Booster, LightGBMModel, TreeEnsembleExplainer, Explainable],
        X: np.ndarray) -> None:
    loaded, model, flat, linear = booster
    assert model.schema.features[2].kind is FeatureKind.CATEGORICAL
    assert isinstance(linear.explainer, LinearTreeExplainer)
    contrib = loaded.predict(model.numeric_input(X), pred_contrib=True)
    raw = loaded.predict(model.numeric_input(X), raw_score=True)
    for explainer in (linear.explainer, flat, LightGBMTreeExplainer(model)):
        explanation = explainer.explain(X)
        np.testing.assert_allclose(explanation.values, contrib[:, :-1], rtol=0, atol=1e-9)
        assert_additive(explanation, raw)
