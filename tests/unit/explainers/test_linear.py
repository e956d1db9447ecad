"""Linear SHAP equals shap.LinearExplainer (interventional, background mean)."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from sklearn.base import BaseEstimator
from sklearn.linear_model import (
    ElasticNet,
    Lasso,
    LinearRegression,
    LogisticRegression,
    Ridge,
    SGDClassifier,
    SGDRegressor,
)

from explainers.errors import MissingValueUnsupported
from explainers.linear import LinearExplainer
from explainers.registry import build_explainable
from explainers.types import OutputSpace
from tests.unit.explainers.support import Dataset, assert_additive, shap_for_class

shap = pytest.importorskip("shap")

# shap's Independent masker keeps at most 100 rows; with 60 both sides use the same mean.
CASES: list[tuple[str, str, Callable[[], BaseEstimator], OutputSpace]] = [
    ("linear_regression", "regression", LinearRegression, OutputSpace.VALUE),
    ("ridge", "regression", lambda: Ridge(alpha=1.0), OutputSpace.VALUE),
    ("lasso", "regression", lambda: Lasso(alpha=0.1), OutputSpace.VALUE),
    ("elastic_net", "regression", lambda: ElasticNet(alpha=0.05), OutputSpace.VALUE),
    ("sgd_regressor", "regression",
     lambda: SGDRegressor(learning_rate="adaptive", eta0=0.1, random_state=0),
     OutputSpace.VALUE),
    ("logistic_binary", "binary", LogisticRegression, OutputSpace.LOG_ODDS),
    ("logistic_multinomial", "multiclass", LogisticRegression, OutputSpace.MARGIN),
    ("sgd_log_loss", "binary", lambda: SGDClassifier(loss="log_loss", random_state=0),
     OutputSpace.LOG_ODDS),
    ("sgd_modified_huber", "multiclass",
     lambda: SGDClassifier(loss="modified_huber", random_state=0), OutputSpace.MARGIN),
]


@pytest.mark.parametrize(("name", "data_name", "make", "space"), CASES,
                         ids=[c[0] for c in CASES])
def test_attributions_equal_shap_linear_explainer(
        name: str, data_name: str, make: Callable[[], BaseEstimator], space: OutputSpace,
        datasets: dict[str, Dataset]) -> None:
    data = datasets[data_name]
    model = make().fit(data.X, data.y)
    explainable = build_explainable("sklearn", model, data.schema, background=data.background)
    assert isinstance(explainable.explainer, LinearExplainer)
    rows = data.test_rows
    explanation = explainable.explainer.explain(rows)
    assert explanation.method == "linear_shap"
    assert explanation.output_space is space

    reference = shap.LinearExplainer(model, data.background)
    values, base = shap_for_class(reference.shap_values(rows), reference.expected_value,
                                  explanation.class_indices, len(rows))
    if values.shape != explanation.values.shape:
        raise AssertionError(f"{name}: shap shape {values.shape}")
    np.testing.assert_allclose(explanation.values, values, rtol=1e-6, atol=1e-9)
    np.testing.assert_allclose(explanation.base_values, base, rtol=1e-6, atol=1e-9)
    margin = (model.decision_function(rows) if hasattr(model, "decision_function")
              else model.predict(rows))
    margin = margin.reshape(len(rows), -1)
    chosen = (np.zeros(len(rows), dtype=int) if explanation.class_indices is None
              else explanation.class_indices)
    assert_additive(explanation, margin[np.arange(len(rows)), chosen])


def test_missing_value_is_refused_by_name(datasets: dict[str, Dataset]) -> None:
    data = datasets["regression"]
    model = Ridge().fit(data.X, data.y)
    explainer = build_explainable("sklearn", model, data.schema,
                                  background=data.background).explainer
    rows = data.test_rows[:3].copy()
    rows[1, 4] = np.nan
    with pytest.raises(MissingValueUnsupported) as caught:
        explainer.explain(rows)
    assert caught.value.features == ("x4",)


def test_background_rows_with_missing_values_are_left_out(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["regression"]
    model = LinearRegression().fit(data.X, data.y)
    background = data.background.copy()
    background[:10, 0] = np.nan
    explainer = build_explainable("sklearn", model, data.schema,
                                  background=background).explainer
    explanation = explainer.explain(data.test_rows[:1])
    expected_base = model.predict(background[10:].mean(axis=0, keepdims=True))[0]
    np.testing.assert_allclose(explanation.base_values[0], expected_base, rtol=1e-9)
