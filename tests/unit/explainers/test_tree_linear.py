"""The linear TreeSHAP explainer equals LightGBM's pred_contrib and shap on real boosters.

Covers what the small fixtures do not: a benchmark-like model (30 features, 63-leaf
trees), trees deeper than 20 levels with up to ~28 distinct features on a path, every
batch path (single rows, blocks, threads), the memory budget's classic fallback, and
predictions derived from the one model call.
"""

from __future__ import annotations

import threading

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.datasets import make_classification
from sklearn.linear_model import LogisticRegression

from explainers import treeshap_tables
from explainers.lightgbm_model import LightGBMModel
from explainers.lightgbm_trees import flatten_lightgbm
from explainers.linear import LinearExplainer
from explainers.prediction_links import predict_and_explain
from explainers.registry import build_explainable
from explainers.tree_linear import KERNEL_CLASSIC, KERNEL_MIXED, LinearTreeExplainer
from explainers.treeshap_linear import FLAG_BITS
from explainers.treeshap_tables import SPLIT_RECORD, compile_ensemble
from explainers.types import Task
from tests.unit.explainers.support import Dataset, assert_additive, numeric_schema

shap = pytest.importorskip("shap")


def _booster(params: dict[str, object], X: np.ndarray, y: np.ndarray,
             rounds: int) -> lgb.Booster:
    base = {"verbose": -1, "num_threads": 1, "seed": 0, "deterministic": True}
    names = [f"x{j}" for j in range(X.shape[1])]  # numeric_schema's names
    trained = lgb.train({**base, **params}, lgb.Dataset(X, y, feature_name=names),
                        num_boost_round=rounds)
    return lgb.Booster(model_str=trained.model_to_string())


@pytest.fixture(scope="module")
def benchmark_like() -> tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]:
    X, y = make_classification(3000, 30, n_informative=12, random_state=0)
    X[::11, 4] = np.nan
    booster = _booster({"objective": "binary", "num_leaves": 63, "learning_rate": 0.1},
                       X, y, 40)
    schema = numeric_schema(30, Task.BINARY, (0, 1))
    explainer = build_explainable("lightgbm", booster, schema, background=X[-64:]).explainer
    assert isinstance(explainer, LinearTreeExplainer)
    return booster, X[:300], explainer


@pytest.mark.parametrize("rows", [1, 2, 5, 8, 31, 300], ids=lambda n: f"{n}rows")
def test_benchmark_like_model_equals_pred_contrib_on_every_batch_path(
        benchmark_like: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer], rows: int) -> None:
    booster, X, explainer = benchmark_like
    explanation = explainer.explain(X[:rows])
    contrib = booster.predict(X[:rows], pred_contrib=True)
    np.testing.assert_allclose(explanation.values, contrib[:, :-1], rtol=0, atol=1e-9)
    np.testing.assert_allclose(explanation.base_values, contrib[:, -1], rtol=0, atol=1e-9)
    assert_additive(explanation, booster.predict(X[:rows], raw_score=True))


def test_benchmark_like_model_equals_shap_tree_explainer(
        benchmark_like: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]) -> None:
    booster, X, explainer = benchmark_like
    reference = shap.TreeExplainer(booster).shap_values(X[:100], check_additivity=False)
    np.testing.assert_allclose(explainer.explain(X[:100]).values, reference, rtol=0, atol=1e-9)


def test_trees_deeper_than_twenty_levels_stay_exact() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(3000, 40))
    X[rng.random(X.shape) < 0.05] = np.nan
    # exp of a sum of many features: leaf-wise growth peels its tail through many features
    y = np.exp(1.8 * np.nansum(X, axis=1) / np.sqrt(40)) + rng.normal(scale=0.01, size=3000)
    booster = _booster({"objective": "regression", "num_leaves": 600, "max_depth": -1,
                        "min_data_in_leaf": 2, "min_sum_hessian_in_leaf": 0,
                        "learning_rate": 0.3}, X, y, 4)
    ensemble = flatten_lightgbm(booster, LightGBMModel(
        booster, numeric_schema(40, Task.REGRESSION)).output_space)
    tables = compile_ensemble(ensemble, memory_budget=None).tables
    assert ensemble.max_depth >= 20
    assert tables.max_points >= 10  # 19+ distinct features on a path
    explainer = build_explainable("lightgbm", booster, numeric_schema(40, Task.REGRESSION),
                                  background=X[-32:]).explainer
    for rows in (X[:1], X[:200]):
        explanation = explainer.explain(rows)
        contrib = booster.predict(rows, pred_contrib=True)
        np.testing.assert_allclose(explanation.values, contrib[:, :-1], rtol=0, atol=1e-9)


def test_memory_budget_moves_trees_to_the_classic_kernel_and_stays_exact(
        benchmark_like: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]) -> None:
    booster, X, unbounded = benchmark_like
    model = LightGBMModel(booster, numeric_schema(30, Task.BINARY, (0, 1)))
    ensemble = flatten_lightgbm(booster, model.output_space)
    contrib = booster.predict(X[:40], pred_contrib=True)[:, :-1]
    assert unbounded.memory_budget_bytes is None and unbounded.trees_classic == 0
    classic = LinearTreeExplainer(ensemble, model, memory_budget=0)
    assert (classic.kernel, classic.trees_linear) == (KERNEL_CLASSIC, 0)
    budget = unbounded.memory_bytes - 2000
    mixed = LinearTreeExplainer(ensemble, model, memory_budget=budget)
    assert mixed.kernel == KERNEL_MIXED
    assert 0 < mixed.trees_classic < booster.num_trees()
    assert mixed.memory_bytes <= budget < unbounded.memory_bytes
    for explainer in (classic, mixed):
        for rows in (1, 5, 40):
            np.testing.assert_allclose(explainer.explain(X[:rows]).values, contrib[:rows],
                                       rtol=0, atol=1e-9)


def test_split_records_describe_each_split_of_the_tables_trees(
        benchmark_like: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]) -> None:
    booster = benchmark_like[0]
    model = LightGBMModel(booster, numeric_schema(30, Task.BINARY, (0, 1)))
    compiled = compile_ensemble(flatten_lightgbm(booster, model.output_space),
                                memory_budget=None)
    trees, tables = compiled.trees, compiled.tables
    records = tables.split_floats.view(SPLIT_RECORD)
    splits = np.flatnonzero(trees.left >= 0)
    np.testing.assert_array_equal(compiled.split_nodes, splits)
    start = tables.tree_starts[np.searchsorted(tables.tree_starts, splits, side="right") - 1]
    np.testing.assert_array_equal(records["node"], splits - start)
    np.testing.assert_array_equal(records["node"] + 1, trees.left[splits] - start)
    np.testing.assert_array_equal(records["right"], trees.right[splits] - start)
    np.testing.assert_array_equal(records["threshold"], trees.thresholds[splits])
    np.testing.assert_array_equal(records["z_left"],
                                  trees.covers[trees.left[splits]] / trees.covers[splits])
    np.testing.assert_array_equal(records["z_right"],
                                  trees.covers[trees.right[splits]] / trees.covers[splits])
    np.testing.assert_array_equal(records["code"] >> FLAG_BITS, trees.features[splits])
    np.testing.assert_array_equal(records["code"] & 3, trees.missing_kinds[splits])
    np.testing.assert_array_equal((records["code"] >> 2) & 1,
                                  trees.default[splits] == trees.left[splits])
    # prev: the nearest ancestor edge on the same feature, found here by walking parents
    parent = np.full(len(trees.left), -1)
    parent[trees.left[splits]] = splits
    parent[trees.right[splits]] = splits
    for n, prev, first in zip(splits[:500], records["prev"][:500], start[:500], strict=True):
        above = n
        while parent[above] >= 0 and trees.features[parent[above]] != trees.features[n]:
            above = parent[above]
        assert prev == (above - first if parent[above] >= 0 else -1), n


def test_more_features_than_a_split_record_names_keep_the_classic_kernel(
        monkeypatch: pytest.MonkeyPatch,
        benchmark_like: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]) -> None:
    booster, X, _ = benchmark_like
    monkeypatch.setattr(treeshap_tables, "MAX_RECORD_FEATURES", 29)  # the model has 30
    model = LightGBMModel(booster, numeric_schema(30, Task.BINARY, (0, 1)))
    explainer = LinearTreeExplainer(flatten_lightgbm(booster, model.output_space), model)
    assert (explainer.kernel, explainer.trees_linear) == (KERNEL_CLASSIC, 0)
    contrib = booster.predict(X[:40], pred_contrib=True)[:, :-1]
    for rows in (1, 5, 40):
        np.testing.assert_allclose(explainer.explain(X[:rows]).values, contrib[:rows],
                                   rtol=0, atol=1e-9)


def test_threads_explaining_at_once_get_their_own_answers(
        benchmark_like: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]) -> None:
    booster, X, explainer = benchmark_like
    slices = [X[i * 60:(i + 1) * 60] for i in range(4)] + [X[7:8]]
    results: dict[int, np.ndarray] = {}

    def run(i: int) -> None:
        for _ in range(3):
            results[i] = explainer.explain(slices[i]).values

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(slices))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for i, rows in enumerate(slices):
        contrib = booster.predict(rows, pred_contrib=True)[:, :-1]
        np.testing.assert_allclose(results[i], contrib, rtol=0, atol=1e-9)


@pytest.mark.parametrize(("objective", "task", "shares"), [
    ({"objective": "binary"}, Task.BINARY, True),
    ({"objective": "multiclass", "num_class": 3}, Task.MULTICLASS, True),
    ({"objective": "multiclassova", "num_class": 3}, Task.MULTICLASS, False),
    ({"objective": "poisson"}, Task.REGRESSION, True),
    ({"objective": "binary", "sigmoid": 0.5}, Task.BINARY, False),
], ids=["binary", "multiclass", "multiclassova", "poisson", "sigmoid"])
def test_predictions_from_the_one_model_call_equal_predict(
        objective: dict[str, object], task: Task, shares: bool,
        datasets: dict[str, Dataset]) -> None:
    data = datasets["multiclass" if task is Task.MULTICLASS else "binary_nan"]
    y = np.abs(data.X[:, 1]) * 3 if task is Task.REGRESSION else data.y
    schema = data.schema if task is not Task.REGRESSION else numeric_schema(6, task)
    booster = _booster({**objective, "num_leaves": 8}, data.X, y, 15)
    explainable = build_explainable("lightgbm", booster, schema, background=data.background)
    explainer = explainable.explainer
    assert isinstance(explainer, LinearTreeExplainer)
    assert explainer.shares_model_call is shares
    predictions, explanation = predict_and_explain(explainable.model, explainer,
                                                   data.test_rows)
    native = explainable.model.predict(data.test_rows)
    np.testing.assert_allclose(predictions.scores, native.scores, rtol=1e-12, atol=1e-15)
    if native.probabilities is not None:
        assert predictions.probabilities is not None
        np.testing.assert_allclose(predictions.probabilities, native.probabilities,
                                   rtol=1e-12, atol=1e-15)
    assert_additive(explanation, _explained(explainable.model.output(data.test_rows),
                                            explanation.class_indices))


def test_explainers_without_a_shared_call_score_with_predict(
        datasets: dict[str, Dataset]) -> None:
    data = datasets["binary"]
    explainable = build_explainable("sklearn", LogisticRegression().fit(data.X, data.y),
                                    data.schema, background=data.background)
    assert isinstance(explainable.explainer, LinearExplainer)
    predictions, explanation = predict_and_explain(explainable.model, explainable.explainer,
                                                   data.test_rows)
    np.testing.assert_array_equal(predictions.scores,
                                  explainable.model.predict(data.test_rows).scores)
    assert explanation.values.shape == data.test_rows.shape


def _explained(outputs: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    return outputs[:, 0] if classes is None else outputs[np.arange(len(classes)), classes]
