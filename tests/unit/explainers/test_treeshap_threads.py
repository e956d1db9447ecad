"""Thread use of the linear TreeSHAP kernel (issue 7): one row stays on the calling thread,
a large batch spreads over every available core, and the answers stay pred_contrib's.

Threads are observed, not replaced: `threading.setprofile` runs a hook in every Python
thread started while it is set, and the hook records which thread it ran in.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest
from sklearn.datasets import make_classification

from explainers.registry import build_explainable
from explainers.tree_linear import LinearTreeExplainer
from explainers.treeshap_fast import available_cores
from explainers.treeshap_kernel import PARALLEL_MIN_ROWS
from explainers.types import Task
from tests.unit.explainers.support import numeric_schema


def _threads_started_during(call: Callable[[], Any]) -> tuple[Any, list[threading.Thread]]:
    """Run `call` on this thread; return its result and the threads it started."""
    started: list[threading.Thread] = []
    lock = threading.Lock()

    def hook(frame: FrameType, event: str, arg: object) -> None:
        with lock:
            started.append(threading.current_thread())
        sys.setprofile(None)  # record once per thread, then run at full speed

    threading.setprofile(hook)
    try:
        result = call()
    finally:
        threading.setprofile(None)
    return result, [t for t in started if t is not threading.current_thread()]


@pytest.fixture(scope="module")
def model() -> tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]:
    X, y = make_classification(2000, 12, n_informative=6, random_state=1)
    names = [f"x{j}" for j in range(12)]
    trained = lgb.train({"objective": "binary", "num_leaves": 31, "verbose": -1, "seed": 0},
                        lgb.Dataset(X, y, feature_name=names), num_boost_round=30)
    booster = lgb.Booster(model_str=trained.model_to_string())
    explainer = build_explainable("lightgbm", booster, numeric_schema(12, Task.BINARY, (0, 1)),
                                  background=X[-50:]).explainer
    assert isinstance(explainer, LinearTreeExplainer)
    return booster, X, explainer


@pytest.mark.parametrize("rows", [1, 2, PARALLEL_MIN_ROWS - 1], ids=lambda n: f"{n}rows")
def test_small_calls_run_on_the_calling_thread_alone(
        model: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer], rows: int) -> None:
    booster, X, explainer = model
    explanation, started = _threads_started_during(lambda: explainer.explain(X[:rows]))
    assert started == []
    np.testing.assert_allclose(explanation.values,
                               np.asarray(booster.predict(X[:rows], pred_contrib=True))[:, :-1],
                               rtol=0, atol=1e-9)


def test_a_large_batch_uses_one_thread_per_available_core(
        model: tuple[lgb.Booster, np.ndarray, LinearTreeExplainer]) -> None:
    booster, X, explainer = model
    cores = available_cores()
    explanation, started = _threads_started_during(lambda: explainer.explain(X[:1000]))
    # the calling thread works too, so all cores are busy with cores - 1 helpers
    assert len(started) == cores - 1
    np.testing.assert_allclose(explanation.values,
                               np.asarray(booster.predict(X[:1000], pred_contrib=True))[:, :-1],
                               rtol=0, atol=1e-9)
