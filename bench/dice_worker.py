"""dice-ml side of bench/counterfactuals.py; runs in bench/.venv-dice (never imports whylens).

Reads train.parquet, queries.parquet and the model files from --dir, asks dice-ml for 3
opposite-class counterfactuals per query with each method, and writes dice.json:
{model: {method: [{"seconds": s, "cfs": [[...], ...], "error": null | "timeout" | ...}]}}.
"""

from __future__ import annotations

import argparse
import json
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import dice_ml
import lightgbm as lgb
import numpy as np
import pandas as pd
import skops.io as sio


class QueryTimeout(Exception):
    """A query ran past its time limit."""


class Classifier:
    """sklearn-style predict/predict_proba over the columns in training order."""

    def __init__(self, predict_positive: Any, names: list[str]) -> None:
        self._positive = predict_positive
        self._names = names

    def predict_proba(self, X: Any) -> np.ndarray:
        values = np.asarray(X[self._names] if hasattr(X, "columns") else X, dtype=np.float64)
        p = np.asarray(self._positive(values), dtype=np.float64)
        return np.column_stack([1.0 - p, p])

    def predict(self, X: Any) -> np.ndarray:
        return (self.predict_proba(X)[:, 1] >= 0.5).astype(int)


def load_models(folder: Path, names: list[str]) -> dict[str, Classifier]:
    booster = lgb.Booster(model_file=str(folder / "lightgbm.txt"))
    models = {"lightgbm": Classifier(booster.predict, names)}
    for name in ("hist_gradient_boosting", "logistic_regression"):
        path = folder / f"{name}.skops"
        estimator = sio.load(path, trusted=sio.get_untrusted_types(file=path))
        models[name] = Classifier(lambda v, e=estimator: e.predict_proba(v)[:, 1], names)
    return models


def _alarm(signum: int, frame: object) -> None:
    raise QueryTimeout


def run_query(explainer: Any, query: pd.DataFrame, names: list[str],
              timeout: float) -> dict[str, Any]:
    signal.setitimer(signal.ITIMER_REAL, timeout)
    started = time.perf_counter()
    try:
        result = explainer.generate_counterfactuals(query, total_CFs=3,
                                                    desired_class="opposite", verbose=False)
        frame = result.cf_examples_list[0].final_cfs_df
        cfs = [] if frame is None else frame[names].to_numpy(np.float64).tolist()
        error = None
    except QueryTimeout:
        cfs, error = [], "timeout"
    except Exception as exc:  # noqa: BLE001 - dice raises bare Exceptions on no answer
        cfs, error = [], type(exc).__name__
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return {"seconds": time.perf_counter() - started, "cfs": cfs, "error": error}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", type=Path, required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    parser.add_argument("--methods", default="random,genetic")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    signal.signal(signal.SIGALRM, _alarm)
    train = pd.read_parquet(args.dir / "train.parquet")
    queries = pd.read_parquet(args.dir / "queries.parquet")
    names = [c for c in train.columns if c != "label"]
    data = dice_ml.Data(dataframe=train, continuous_features=names, outcome_name="label")
    out: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for model_name, model in load_models(args.dir, names).items():
        wrapped = dice_ml.Model(model=model, backend="sklearn")
        out[model_name] = {}
        for method in args.methods.split(","):
            explainer = dice_ml.Dice(data, wrapped, method=method)
            runs = [run_query(explainer, queries.iloc[[i]][names], names, args.timeout)
                    for i in range(len(queries))]
            out[model_name][method] = runs
            median = float(np.median([r["seconds"] for r in runs]))
            print(f"  dice {method} on {model_name}: median {median:.2f} s/query", flush=True)
    (args.dir / "dice.json").write_text(json.dumps(out))
    print(f"dice-ml {dice_ml.__version__ if hasattr(dice_ml, '__version__') else '?'}")


if __name__ == "__main__":
    main()
