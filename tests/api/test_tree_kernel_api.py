"""The service explains LightGBM with the linear TreeSHAP kernel and says so per version."""

from __future__ import annotations

from pathlib import Path

import httpx
import lightgbm as lgb
import numpy as np
import pandas as pd

from explainers.tree_linear import TABLE_MEMORY_FACTOR
from tests.api.conftest import LABEL, record_from


async def test_version_reports_kernel_memory_and_warm_up(
    client: httpx.AsyncClient, credit_booster: tuple[lgb.Booster, Path],
) -> None:
    answer = await client.get("/v1/models/credit/versions/1")
    assert answer.status_code == 200
    block = answer.json()["explainer"]
    assert block["method"] == "tree_shap"
    assert block["kernel"] == "linear_treeshap"
    assert block["memory_budget_bytes"] == TABLE_MEMORY_FACTOR * credit_booster[1].stat().st_size
    assert 0 < block["memory_bytes"] <= block["memory_budget_bytes"]
    assert block["trees_linear"] == credit_booster[0].num_trees()
    assert block["trees_classic"] == 0
    assert block["warm_up_ms"] >= 0
    assert block["kernel_warm_up_ms"] > 0
    assert block["predictions_from_output"] is True


async def test_explained_record_equals_lightgbm_pred_contrib_and_predict(
    client: httpx.AsyncClient, credit_frame: pd.DataFrame,
    credit_booster: tuple[lgb.Booster, Path],
) -> None:
    booster = credit_booster[0]
    for i in (4, 17, 29):
        record = record_from(credit_frame, i, f"kernel-{i}")
        answer = await client.post("/v1/explain", json=record)
        assert answer.status_code == 200
        trace = answer.json()
        row = credit_frame.drop(columns=[LABEL]).iloc[[i]]
        contrib = booster.predict(row, pred_contrib=True)[0]
        names = booster.feature_name()
        ours = np.array([trace["explanation"]["attributions"][n] for n in names])
        np.testing.assert_allclose(ours, contrib[:-1], rtol=0, atol=1e-9)
        assert abs(trace["explanation"]["base_value"] - contrib[-1]) <= 1e-9
        score = trace["prediction"]["recomputed"]["score"]
        assert abs(score - float(booster.predict(row)[0])) <= 1e-12
