"""Counterfactual search: every answer re-scored by the model's own library, constraints kept."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import make_classification
from sklearn.ensemble import HistGradientBoostingClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression

from explainers.counterfactual import CounterfactualSearcher, build_counterfactual_searcher
from explainers.counterfactual_moves import MoveSet, TreeMoves
from explainers.counterfactual_space import FeatureSpace
from explainers.counterfactual_types import (
    ClassTarget,
    Constraints,
    CounterfactualRequest,
    CounterfactualResult,
    Direction,
    IntervalTarget,
    LabelTarget,
    Relation,
    SearchStatus,
    parse_relation,
)
from explainers.encoding import encode_frame
from explainers.errors import CounterfactualRequestInvalid
from explainers.lightgbm_model import infer_lightgbm_schema
from explainers.registry import build_explainable
from explainers.sklearn_schema import infer_sklearn_schema
from service.demo.credit_data import make_applications

LABEL = "defaulted"


@dataclass(frozen=True)
class Fitted:
    """A fitted model, its training frame and our searcher over it."""

    estimator: Any
    frame: pd.DataFrame  # inputs only
    X: np.ndarray  # encoded
    searcher: CounterfactualSearcher

    def names(self) -> list[str]:
        return list(self.frame.columns)


def _fitted(estimator: Any, frame: pd.DataFrame, flavor: str) -> Fitted:
    if flavor == "lightgbm":
        schema = infer_lightgbm_schema(estimator.booster_, frame)
        model_object: Any = estimator.booster_
    else:
        schema = infer_sklearn_schema(estimator, frame)
        model_object = estimator
    X = encode_frame(frame, schema)
    explainable = build_explainable(flavor, model_object, schema, background=X[-100:])
    searcher = build_counterfactual_searcher(explainable.model, X[-200:],
                                             explainer=explainable.explainer)
    return Fitted(estimator, frame, X, searcher)


@pytest.fixture(scope="session")
def credit() -> Fitted:
    data = make_applications(2000, seed=5)
    frame = data.drop(columns=[LABEL])
    model = lgb.LGBMClassifier(n_estimators=40, num_leaves=15, random_state=0, verbose=-1)
    model.fit(frame, data[LABEL])
    return _fitted(model, frame, "lightgbm")


def _numeric_frame(n: int, seed: int, classes: int = 2) -> tuple[pd.DataFrame, np.ndarray]:
    X, y = make_classification(n, 8, n_informative=5, n_classes=classes,
                               n_clusters_per_class=1, random_state=seed)
    return pd.DataFrame(X, columns=[f"x{j}" for j in range(8)]), y


@pytest.fixture(scope="session")
def hist_gb() -> Fitted:
    frame, y = _numeric_frame(1500, 1)
    model = HistGradientBoostingClassifier(max_iter=60, random_state=0).fit(frame.to_numpy(), y)
    return _fitted(model, frame, "sklearn")


@pytest.fixture(scope="session")
def logistic() -> Fitted:
    frame, y = _numeric_frame(1500, 2)
    return _fitted(LogisticRegression(max_iter=500).fit(frame.to_numpy(), y), frame, "sklearn")


@pytest.fixture(scope="session")
def forest_regression() -> Fitted:
    frame, _ = _numeric_frame(1200, 3)
    y = 2 * frame["x0"] + frame["x1"] - frame["x2"]
    model = RandomForestRegressor(n_estimators=20, max_depth=6, random_state=0)
    return _fitted(model.fit(frame.to_numpy(), y), frame, "sklearn")


@pytest.fixture(scope="session")
def multiclass() -> Fitted:
    frame, y = _numeric_frame(1500, 4, classes=3)
    model = lgb.LGBMClassifier(n_estimators=30, num_leaves=7, random_state=0, verbose=-1)
    return _fitted(model.fit(frame, y), frame, "lightgbm")


def _applied(fitted: Fitted, i: int, changes: dict[str, tuple[object, object]]) -> pd.DataFrame:
    """Row i of the raw frame with the counterfactual's decoded values put in."""
    row = fitted.frame.iloc[[i]].copy()
    for name, (before, after) in changes.items():
        current = row.iloc[0][name]
        assert before == current or (pd.isna(before) and pd.isna(current))
        row.loc[row.index[0], name] = after
    return row


def _library_scores(fitted: Fitted, rows: pd.DataFrame) -> np.ndarray:
    """Score with the model's own library, never through our adapters."""
    estimator = fitted.estimator
    if isinstance(estimator, lgb.LGBMClassifier):
        return np.asarray(estimator.booster_.predict(rows))
    if hasattr(estimator, "predict_proba"):
        return np.asarray(estimator.predict_proba(rows.to_numpy()))
    return np.asarray(estimator.predict(rows.to_numpy()))


def _check_answers(result: CounterfactualResult, fitted: Fitted, i: int,
                   constraints: Constraints) -> list[np.ndarray]:
    scores = []
    for cf in result.counterfactuals:
        assert set(cf.changes) <= set(fitted.names())
        assert cf.n_changed == len(cf.changes) >= 1
        assert not set(cf.changes) & constraints.immutable
        for name, (before, after) in cf.changes.items():
            low, high = constraints.ranges.get(name, (None, None))
            assert low is None or after >= low  # type: ignore[operator]
            assert high is None or after <= high  # type: ignore[operator]
            if name in constraints.categories:
                assert after in constraints.categories[name]
            direction = constraints.directions.get(name, Direction.ANY)
            if direction is Direction.INCREASE:
                assert after > before  # type: ignore[operator]
            if direction is Direction.DECREASE:
                assert after < before  # type: ignore[operator]
        rescored = _library_scores(fitted, _applied(fitted, i, dict(cf.changes)))[0]
        scores.append(rescored)
    sets = [frozenset(cf.changes) for cf in result.counterfactuals]
    assert all(not a <= b for k, a in enumerate(sets) for b in sets[k + 1:])
    return scores


def test_lightgbm_counterfactuals_flip_the_label_when_rescored_by_lightgbm(
        credit: Fitted) -> None:
    constraints = Constraints(immutable=frozenset({"age", "credit_history_months"}))
    found = 0
    for i in range(8):
        score = credit.estimator.booster_.predict(credit.frame.iloc[[i]])[0]
        threshold = 0.3
        result = credit.searcher.search(credit.X[i], CounterfactualRequest(
            LabelTarget(threshold=threshold), constraints, count=3))
        assert result.method == "tree_thresholds"
        found += result.status is SearchStatus.FOUND
        for rescored in _check_answers(result, credit, i, constraints):
            assert (rescored >= threshold) != (score >= threshold)
    assert found >= 6


def test_tree_kernel_outputs_equal_the_model_outputs(credit: Fitted, hist_gb: Fitted) -> None:
    for fitted in (credit, hist_gb):
        evaluator = fitted.searcher.evaluator
        assert isinstance(evaluator, TreeMoves)
        model = fitted.searcher.model
        x = fitted.X[3]
        space = FeatureSpace(model.schema, x, Constraints(), scales=np.ones(x.size))
        moves: MoveSet = evaluator.moves(space)
        states = fitted.X[3:6]
        base, values, _ = evaluator.evaluate(states, moves)
        rows = np.repeat(states[:, None, :], len(moves), axis=1)
        rows[:, np.arange(len(moves)), moves.features] = moves.values
        expected = model.output(rows.reshape(-1, x.size)).reshape(values.shape)
        np.testing.assert_allclose(values, expected, rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(base, model.output(states), rtol=1e-9, atol=1e-9)


def test_hist_gradient_boosting_counterfactuals_are_valid(hist_gb: Fitted) -> None:
    for i in range(6):
        before = hist_gb.estimator.predict_proba(hist_gb.X[i:i + 1])[0, 1] >= 0.5
        result = hist_gb.searcher.search(hist_gb.X[i], CounterfactualRequest(LabelTarget()))
        assert result.status is SearchStatus.FOUND
        for rescored in _check_answers(result, hist_gb, i, Constraints()):
            assert (rescored[1] >= 0.5) != before


def test_logistic_regression_counterfactuals_are_valid_and_close(logistic: Fitted) -> None:
    estimator = logistic.estimator
    for i in range(6):
        x = logistic.X[i]
        before = estimator.predict_proba(x[None])[0, 1] >= 0.5
        result = logistic.searcher.search(x, CounterfactualRequest(LabelTarget()))
        assert result.method == "sample_search"
        assert result.status is SearchStatus.FOUND
        for rescored in _check_answers(result, logistic, i, Constraints()):
            assert (rescored[1] >= 0.5) != before
        # a single-feature answer crosses the boundary close to where the linear model
        # says it is: x_j = x_j0 - margin / coef_j
        margin = float(estimator.decision_function(x[None])[0])
        for cf in result.counterfactuals:
            if cf.n_changed == 1:
                (name, (start, end)), = cf.changes.items()
                j = logistic.names().index(name)
                crossing = start - margin / estimator.coef_[0, j]
                span = abs(crossing - start)
                assert abs(end - crossing) <= 0.1 * span + 1e-9


def test_regression_reaches_the_target_interval(forest_regression: Fitted) -> None:
    estimator = forest_regression.estimator
    for i in range(5):
        now = estimator.predict(forest_regression.X[i:i + 1])[0]
        low, high = now + 1.0, now + 2.0
        result = forest_regression.searcher.search(
            forest_regression.X[i], CounterfactualRequest(IntervalTarget(low, high)))
        assert result.status is SearchStatus.FOUND
        assert result.target == {"min": low, "max": high}
        for rescored in _check_answers(result, forest_regression, i, Constraints()):
            assert low <= rescored <= high


def test_multiclass_reaches_the_named_class(multiclass: Fitted) -> None:
    booster = multiclass.estimator.booster_
    for i in range(5):
        current = int(np.argmax(booster.predict(multiclass.frame.iloc[[i]])[0]))
        wanted = (current + 1) % 3
        result = multiclass.searcher.search(multiclass.X[i],
                                            CounterfactualRequest(ClassTarget(wanted)))
        assert result.status is SearchStatus.FOUND
        for rescored in _check_answers(result, multiclass, i, Constraints()):
            assert int(np.argmax(rescored)) == wanted
            assert result.counterfactuals[0].label == wanted


def test_constraints_hold_on_every_answer(credit: Fitted) -> None:
    constraints = Constraints(
        immutable=frozenset({"age", "income", "credit_history_months", "zip_code"}),
        ranges={"debt_ratio": (0.0, 0.8), "savings_balance": (0.0, 200_000.0)},
        categories={"home_ownership": ("own", "mortgage"), "purpose": ("car", "other")},
        directions={"savings_balance": Direction.INCREASE,
                    "num_late_payments_12m": Direction.DECREASE},
        relations=(Relation("debt", "credit_limit"),),
    )
    answers = 0
    for i in range(10):
        result = credit.searcher.search(credit.X[i], CounterfactualRequest(
            LabelTarget(threshold=0.25), constraints, count=3))
        _check_answers(result, credit, i, constraints)
        for cf in result.counterfactuals:
            row = _applied(credit, i, dict(cf.changes)).iloc[0]
            if {"debt", "credit_limit"} & set(cf.changes):
                assert row["debt"] <= row["credit_limit"]
        answers += len(result.counterfactuals)
    assert answers > 0


def test_cross_feature_constraint_removes_answers_that_break_it() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"debt": rng.uniform(0, 100, 3000),
                          "credit_limit": rng.uniform(0, 100, 3000),
                          "noise": rng.normal(size=3000)})
    y = (frame["debt"] > 60).astype(int)  # raising debt is the one cheap way to flip
    model = lgb.LGBMClassifier(n_estimators=20, num_leaves=7, random_state=0, verbose=-1)
    fitted = _fitted(model.fit(frame, y), frame, "lightgbm")
    picks = np.flatnonzero((frame["debt"] < 40) & (frame["credit_limit"] < 50))[:5]
    relation = Constraints(relations=(parse_relation("debt <= credit_limit"),))
    for i in picks:
        free = fitted.searcher.search(fitted.X[i], CounterfactualRequest(LabelTarget()))
        assert any(_applied(fitted, int(i), dict(cf.changes)).iloc[0]["debt"]
                   > frame["credit_limit"].iloc[i] for cf in free.counterfactuals)
        bound = fitted.searcher.search(fitted.X[i], CounterfactualRequest(LabelTarget(),
                                                                          relation))
        assert bound.status is SearchStatus.FOUND
        for cf in bound.counterfactuals:
            row = _applied(fitted, int(i), dict(cf.changes)).iloc[0]
            assert row["debt"] <= row["credit_limit"]
            assert model.booster_.predict(_applied(fitted, int(i), dict(cf.changes)))[0] >= 0.5


def test_everything_immutable_says_none_found(credit: Fitted) -> None:
    constraints = Constraints(immutable=frozenset(credit.names()))
    result = credit.searcher.search(credit.X[0], CounterfactualRequest(LabelTarget(),
                                                                       constraints))
    assert result.status is SearchStatus.NONE_FOUND
    assert result.counterfactuals == ()
    assert result.reason and "no feature may change" in result.reason


def test_unreachable_target_says_none_found(hist_gb: Fitted) -> None:
    # only one weak feature may move, in one direction, within a tiny range
    names = hist_gb.names()
    x = hist_gb.X[0]
    constraints = Constraints(immutable=frozenset(names[1:]),
                              ranges={names[0]: (float(x[0]), float(x[0]) + 1e-3)})
    result = hist_gb.searcher.search(x, CounterfactualRequest(LabelTarget(), constraints))
    if result.status is SearchStatus.FOUND:  # the model may flip even within the range
        before = hist_gb.estimator.predict_proba(x[None])[0, 1] >= 0.5
        for rescored in _check_answers(result, hist_gb, 0, constraints):
            assert (rescored[1] >= 0.5) != before
    else:
        assert result.counterfactuals == () and result.reason


def test_query_already_at_the_target_says_so(logistic: Fitted) -> None:
    x = logistic.X[0]
    positive = logistic.estimator.predict_proba(x[None])[0, 1] >= 0.5
    result = logistic.searcher.search(x, CounterfactualRequest(LabelTarget(positive=positive)))
    assert result.status is SearchStatus.NONE_FOUND
    assert result.reason == "the query already reaches the target"


@pytest.mark.parametrize(("constraints", "field"), [
    (Constraints(immutable=frozenset({"nope"})), "immutable"),
    (Constraints(ranges={"zip_code": (0.0, 1.0)}), "ranges.zip_code"),
    (Constraints(categories={"home_ownership": ("castle",)}), "categories.home_ownership[0]"),
    (Constraints(categories={"income": ("1",)}), "categories.income"),
    (Constraints(costs={"income": 0.0}), "weights.income"),
    (Constraints(relations=(Relation("zip_code", "income"),)), "constraints[0]"),
])
def test_invalid_constraints_name_the_field(credit: Fitted, constraints: Constraints,
                                            field: str) -> None:
    with pytest.raises(CounterfactualRequestInvalid) as caught:
        credit.searcher.search(credit.X[0], CounterfactualRequest(LabelTarget(), constraints))
    assert caught.value.field == field
    assert "castle" not in str(caught.value)


def test_wrong_target_kind_is_refused(multiclass: Fitted) -> None:
    with pytest.raises(CounterfactualRequestInvalid):
        multiclass.searcher.search(multiclass.X[0], CounterfactualRequest(LabelTarget()))


def test_counterfactual_repr_hides_values(credit: Fitted) -> None:
    result = credit.searcher.search(credit.X[1], CounterfactualRequest(LabelTarget(
        threshold=0.3)))
    assert result.counterfactuals
    for cf in result.counterfactuals:
        assert "changes=" not in repr(cf) and "row=" not in repr(cf)
    assert "categories=" not in repr(Constraints(categories={"zip_code": ("94110",)}))


def test_candidate_values_are_round_and_inside_their_interval() -> None:
    from explainers.counterfactual_values import model_value, values_above, values_at_most

    low = np.array([0.30500000000000005, 10.5, 41999.87, 1.0000001])
    high = np.array([0.9, 11.2, 43000.0, 1.0000002])
    for float32 in (False, True):
        above = values_above(low, high, tolerance=0.01, integer=False, float32=float32)
        at_most = values_at_most(low, high, tolerance=0.01, integer=False, float32=float32)
        for values in (above, at_most):
            seen = model_value(values, float32=float32)
            assert np.all((seen > low) & (seen <= high))
        if not float32:
            assert above[0] == 0.31 and at_most[1] == 11.2 and above[2] == 41999.88
    whole = values_above(np.array([2.5, 3.2]), np.array([7.0, 3.9]), tolerance=5.0,
                         integer=True, float32=False)
    assert whole[0] == 3.0 and np.isnan(whole[1])  # no whole number in (3.2, 3.9]
