"""POST /v1/explain over HTTP: bad input, multiclass and regression models, a skops forest,
the rollback switch.

Attributions are compared with LightGBM's own `pred_contrib` on the pandas rows the
models were trained on (categorical columns included), and with `shap.TreeExplainer`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd
import pytest
import shap
import skops.io
from sklearn.ensemble import RandomForestClassifier

from service.app import create_app
from service.demo.credit_data import FEATURES_YAML
from service.publishing import PublishRequest, promote, publish_from_files
from service.settings import ExplainSettings, SamplingSettings, Settings
from tests.api.conftest import LABEL, record_from

PROBLEM = "application/problem+json"


@asynccontextmanager
async def _serve(settings: Settings, traces: Path) -> AsyncIterator[httpx.AsyncClient]:
    """The app on `settings` with its own SQLite trace store at `traces`."""
    app = create_app(settings.model_copy(update={"traces": f"sqlite:///{traces}"}))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://whylens") as http:
            yield http


def _problem(answer: httpx.Response, status: int) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"] == PROBLEM
    body: dict[str, Any] = answer.json()
    assert body["status"] == status
    return body


@pytest.mark.parametrize("body", [b"{not json", b"[1, 2]", b'"r-1"'],
                         ids=["not-json", "array", "string"])
async def test_explain_malformed_bodies_are_400_problems(client: httpx.AsyncClient,
                                                         body: bytes) -> None:
    _problem(await client.post("/v1/explain", content=body,
                               headers={"content-type": "application/json"}), 400)


async def test_explain_full_record_is_validated_against_the_manifest_per_field(
        client: httpx.AsyncClient, credit_frame: pd.DataFrame) -> None:
    record = record_from(credit_frame, 1, "explain-bad-1")
    record["features"]["age"] = "forty"
    record["features"]["shoe_size"] = 44
    del record["features"]["debt_ratio"]
    body = _problem(await client.post("/v1/explain", json=record), 422)
    assert {e["field"] for e in body["errors"]} == {
        "features.age", "features.shoe_size", "features.debt_ratio"}
    # nothing was logged for the refused record
    _problem(await client.post("/v1/explain", json={"request_id": "explain-bad-1"}), 404)


async def test_explain_unknown_model_version_or_request_is_404_problem(
        client: httpx.AsyncClient, credit_frame: pd.DataFrame) -> None:
    model = _problem(await client.post(
        "/v1/explain", json=record_from(credit_frame, 1, "e-404-m", model="nope")), 404)
    version = _problem(await client.post(
        "/v1/explain", json=record_from(credit_frame, 1, "e-404-v", version="9")), 404)
    request = _problem(await client.post("/v1/explain", json={"request_id": "never-logged"}),
                       404)
    assert model["type"].endswith("model-not-found")
    assert version["type"].endswith("version-not-found")
    assert "never-logged" in request["detail"]


async def test_unknown_version_of_a_known_model_is_404_problem(
        client: httpx.AsyncClient) -> None:
    _problem(await client.get("/v1/models/credit/versions/9"), 404)
    _problem(await client.get("/v1/models/credit/versions/staging"), 404)


@pytest.fixture(scope="module")
async def other_tasks(credit_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
                      ) -> tuple[Settings, dict[str, lgb.Booster]]:
    """A multiclass (`tiers`) and a regression (`amount`) LightGBM model of the credit data,
    categorical columns included, published through the same path as `whylens publish`."""
    root = tmp_path_factory.mktemp("other-tasks")
    features = root / "FEATURES.yaml"
    features.write_text(FEATURES_YAML, encoding="utf-8")
    X = credit_frame.drop(columns=[LABEL])
    rng = np.random.default_rng(4)
    targets = {
        "tiers": pd.qcut(X["debt_ratio"] + rng.normal(0, 0.1, len(X)), 3, labels=False),
        "amount": X["loan_amount"] * 0.01 + 50 * credit_frame[LABEL] + rng.normal(0, 5, len(X)),
    }
    settings = Settings(data_dir=root / "data", auth="off",
                        sampling=SamplingSettings(rate=0.0, always_cohorts=["canary"]))
    boosters: dict[str, lgb.Booster] = {}
    for name, y in targets.items():
        estimator = (lgb.LGBMClassifier if name == "tiers" else lgb.LGBMRegressor)(
            n_estimators=25, num_leaves=15, random_state=0, verbose=-1)
        estimator.fit(X, y)
        model_path = root / f"{name}.txt"
        estimator.booster_.save_model(str(model_path))
        train = root / f"{name}.parquet"
        X.assign(target=y).to_parquet(train)
        await publish_from_files(settings, PublishRequest(
            name=name, version="1", model_path=model_path, train_path=train, label="target",
            features_path=features))
        await promote(settings, name, "1", "production")
        boosters[name] = lgb.Booster(model_file=str(model_path))
    return settings, boosters


def _attributions(trace: dict[str, Any], names: list[str] | pd.Index) -> np.ndarray:
    return np.array([trace["explanation"]["attributions"][n] for n in names])


async def test_multiclass_explains_the_predicted_class_equal_to_pred_contrib(
        other_tasks: tuple[Settings, dict[str, lgb.Booster]], credit_frame: pd.DataFrame,
        tmp_path: Path) -> None:
    settings, booster = other_tasks[0], other_tasks[1]["tiers"]
    X = credit_frame.drop(columns=[LABEL])
    seen_classes = set()
    async with _serve(settings, tmp_path / "t.db") as http:
        for i in range(12):
            record = record_from(credit_frame, i, f"tier-{i}", model="tiers",
                                 prediction={"label": 0})
            answer = await http.post("/v1/explain", json=record)
            assert answer.status_code == 200, answer.text
            trace = answer.json()
            row = X.iloc[[i]]
            probabilities = booster.predict(row)[0]
            predicted = int(np.argmax(probabilities))
            seen_classes.add(predicted)
            explanation = trace["explanation"]
            assert trace["model"]["task"] == "multiclass"
            assert explanation["explained_class"] == predicted
            assert trace["prediction"]["recomputed"]["label"] == predicted
            contrib = booster.predict(row, pred_contrib=True)[0].reshape(3, X.shape[1] + 1)
            np.testing.assert_allclose(_attributions(trace, X.columns), contrib[predicted, :-1],
                                       rtol=0, atol=1e-9)
            assert abs(explanation["base_value"] - contrib[predicted, -1]) <= 1e-9
            raw = booster.predict(row, raw_score=True)[0][predicted]
            total = explanation["base_value"] + sum(explanation["attributions"].values())
            assert total == pytest.approx(raw, rel=1e-6)
    assert len(seen_classes) >= 2  # not one class explained every time


async def test_regression_is_explained_in_value_space_equal_to_pred_contrib(
        other_tasks: tuple[Settings, dict[str, lgb.Booster]], credit_frame: pd.DataFrame,
        tmp_path: Path) -> None:
    settings, booster = other_tasks[0], other_tasks[1]["amount"]
    X = credit_frame.drop(columns=[LABEL])
    async with _serve(settings, tmp_path / "t.db") as http:
        for i in (2, 9):
            record = record_from(credit_frame, i, f"amount-{i}", model="amount",
                                 prediction={"score": 100.0})
            trace = (await http.post("/v1/explain", json=record)).json()
            row = X.iloc[[i]]
            contrib = booster.predict(row, pred_contrib=True)[0]
            assert trace["explanation"]["output_space"] == "value"
            assert "explained_class" not in trace["explanation"]
            np.testing.assert_allclose(_attributions(trace, X.columns), contrib[:-1],
                                       rtol=0, atol=1e-9)
            assert trace["prediction"]["recomputed"]["score"] == pytest.approx(
                float(booster.predict(row)[0]), abs=1e-9)


async def test_reference_kernel_setting_rolls_back_to_pred_contrib_with_equal_answers(
        published_settings: Settings, credit_frame: pd.DataFrame,
        credit_booster: tuple[lgb.Booster, Path], tmp_path: Path) -> None:
    booster = credit_booster[0]
    names = list(credit_frame.drop(columns=[LABEL]).columns)
    traces: dict[str, dict[str, Any]] = {}
    for kernel in ("linear", "reference"):
        settings = published_settings.model_copy(update={
            "explain": ExplainSettings(tree_kernel=kernel)})
        async with _serve(settings, tmp_path / f"{kernel}.db") as http:
            version = (await http.get("/v1/models/credit/versions/1")).json()
            expected = "linear_treeshap" if kernel == "linear" else "lightgbm_pred_contrib"
            assert version["explainer"]["kernel"] == expected
            traces[kernel] = (await http.post(
                "/v1/explain", json=record_from(credit_frame, 13, f"rollback-{kernel}"))).json()
    contrib = booster.predict(credit_frame.drop(columns=[LABEL]).iloc[[13]],
                              pred_contrib=True)[0]
    for trace in traces.values():
        assert trace["explanation"]["method"] == "tree_shap"
        np.testing.assert_allclose(_attributions(trace, names), contrib[:-1], rtol=0,
                                   atol=1e-9)


@pytest.fixture(scope="module")
async def forest(credit_frame: pd.DataFrame, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Settings, RandomForestClassifier, pd.DataFrame]:
    """A scikit-learn forest saved with skops and published from CSV, trained without
    missing values (so its features do not accept null)."""
    root = tmp_path_factory.mktemp("forest")
    numeric = credit_frame.drop(columns=[LABEL]).select_dtypes("number").dropna(axis=1)
    model = RandomForestClassifier(n_estimators=12, max_depth=6, random_state=0)
    model.fit(numeric, credit_frame[LABEL])
    model_path = root / "forest.skops"
    skops.io.dump(model, model_path)
    train = root / "train.csv"
    numeric.assign(defaulted=credit_frame[LABEL]).to_csv(train, index=False)
    settings = Settings(data_dir=root / "data", auth="off",
                        sampling=SamplingSettings(rate=0.0, always_cohorts=["canary"]))
    await publish_from_files(settings, PublishRequest(
        name="forest", version="1", model_path=model_path, train_path=train, label=LABEL))
    await promote(settings, "forest", "1", "production")
    return settings, model, numeric


async def test_skops_forest_is_explained_equal_to_shap_and_refuses_null_per_field(
        forest: tuple[Settings, RandomForestClassifier, pd.DataFrame], tmp_path: Path) -> None:
    settings, model, numeric = forest
    names = list(numeric.columns)
    reference = shap.TreeExplainer(model)
    async with _serve(settings, tmp_path / "t.db") as http:
        for i in (0, 7):
            features = {n: numeric.iloc[i][n].item() for n in names}
            record = {"request_id": f"forest-{i}", "model": "forest", "features": features,
                      "prediction": {"score": 0.5}, "context": {"cohort": "canary"}}
            answer = await http.post("/v1/predictions", json=record)
            assert answer.json()["sampled"] is True
            trace = (await http.get(f"/v1/traces/forest-{i}")).json()
            assert trace["model"]["flavor"] == "sklearn"
            assert trace["explanation"]["method"] == "tree_shap"
            expected = np.asarray(reference.shap_values(numeric.iloc[[i]]))[0, :, 1]
            np.testing.assert_allclose(_attributions(trace, names), expected, rtol=0,
                                       atol=1e-9)
        features = {n: numeric.iloc[3][n].item() for n in names}
        features[names[0]] = None
        refused = await http.post("/v1/predictions", json={
            "request_id": "forest-null", "model": "forest", "features": features,
            "prediction": {"score": 0.5}})
        body = _problem(refused, 422)
        assert [e["field"] for e in body["errors"]] == [f"features.{names[0]}"]
