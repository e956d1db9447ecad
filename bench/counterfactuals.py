"""Counterfactual benchmark: whylens vs dice-ml (`random`, `genetic`) in the same run.

Three models on the foundation's benchmark data (make_classification 50k x 30): the
500-tree LightGBM model, a scikit-learn HistGradientBoostingClassifier and a
LogisticRegression. The same queries go to both sides; 3 opposite-class counterfactuals
each. Every answer is re-scored here by the model's own library (validity); changed
features, MAD-normalised L1 proximity (MAD of the training data), training-range share
and median time per query are computed the same way for both. Our queries are timed
before and after the dice-ml run; the slower timing of each query counts.

dice-ml does not install beside our pandas, so it runs in its own virtualenv
(bench/.venv-dice, created on first use) as a subprocess on the same data and models
(LightGBM text file, skops files, Parquet).

Run (from the repository root): .venv/bin/python -m bench.counterfactuals [--queries 50]
[--timeout 60]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import skops.io as sio
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression

from bench.common import reference_data, scratch_dir, train_reference_model
from explainers.counterfactual import build_counterfactual_searcher
from explainers.counterfactual_types import Constraints, CounterfactualRequest, LabelTarget
from explainers.encoding import encode_frame
from explainers.lightgbm_model import infer_lightgbm_schema
from explainers.registry import build_explainable
from explainers.sklearn_schema import infer_sklearn_schema

BENCH = Path(__file__).resolve().parent
DICE_VENV = BENCH / ".venv-dice"
DICE_PACKAGES = ["dice-ml", "lightgbm", "scikit-learn", "skops", "pandas", "pyarrow"]
BACKGROUND_ROWS = 200


@dataclass
class Side:
    """Answers of one method on one model: per query, the seconds and the rows."""

    seconds: list[float]
    answers: list[np.ndarray]  # (k, 30) per query, k = 0..3
    errors: list[str | None]


def ensure_dice_venv() -> Path:
    """Create bench/.venv-dice with dice-ml on first use; return its python."""
    python = DICE_VENV / "bin" / "python"
    stamp = DICE_VENV / ".installed"
    if not stamp.exists():
        print("creating bench/.venv-dice (dice-ml and its dependencies) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(DICE_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *DICE_PACKAGES],
                       check=True)
        stamp.write_text("\n".join(DICE_PACKAGES))
    return python


def train_models(frame: pd.DataFrame) -> dict[str, tuple[str, Any, Any]]:
    """name → (flavor, model object, P(positive) on a float matrix)."""
    X = frame.drop(columns=["label"]).to_numpy(np.float64)
    y = frame["label"].to_numpy()
    started = time.perf_counter()
    booster = train_reference_model(frame)
    hgb = HistGradientBoostingClassifier(random_state=0).fit(X, y)
    logistic = LogisticRegression(max_iter=1000).fit(X, y)
    print(f"trained the three models in {time.perf_counter() - started:.0f} s", flush=True)
    return {
        "lightgbm": ("lightgbm", booster, booster.predict),
        "hist_gradient_boosting": ("sklearn", hgb, lambda v: hgb.predict_proba(v)[:, 1]),
        "logistic_regression": ("sklearn", logistic,
                                lambda v: logistic.predict_proba(v)[:, 1]),
    }


def run_ours(flavor: str, model_object: Any, features: pd.DataFrame,
             queries: np.ndarray) -> tuple[Side, float, Callable[[], list[float]]]:
    """Our searcher on the queries (warm: one query before timing).

    Returns the answers, the build seconds, and a function that times the same queries
    again (run after dice-ml, so both sides see the machine's later load too).
    """
    if flavor == "lightgbm":
        schema = infer_lightgbm_schema(model_object, features)
    else:
        schema = infer_sklearn_schema(model_object, features)
    X = encode_frame(features, schema)
    background = X[np.random.default_rng(1).choice(len(X), BACKGROUND_ROWS, replace=False)]
    started = time.perf_counter()
    explainable = build_explainable(flavor, model_object, schema, background=background[:100])
    searcher = build_counterfactual_searcher(explainable.model, background,
                                             explainer=explainable.explainer)
    build_s = time.perf_counter() - started
    ranges = {name: (float(features[name].min()), float(features[name].max()))
              for name in features.columns}
    request = CounterfactualRequest(LabelTarget(threshold=0.5), Constraints(ranges=ranges),
                                    count=3)
    searcher.search(X[-1], request)  # compiles the kernels
    rows = encode_frame(pd.DataFrame(queries, columns=features.columns), schema)
    side = Side([], [], [])
    for row in rows:
        started = time.perf_counter()
        result = searcher.search(row, request)
        side.seconds.append(time.perf_counter() - started)
        side.answers.append(np.array([cf.row for cf in result.counterfactuals]).reshape(
            -1, queries.shape[1]))
        side.errors.append(result.reason)

    def retime() -> list[float]:
        seconds = []
        for row in rows:
            started = time.perf_counter()
            searcher.search(row, request)
            seconds.append(time.perf_counter() - started)
        return seconds

    return side, build_s, retime


def run_dice(python: Path, folder: Path, timeout: float) -> dict[str, dict[str, Side]]:
    """dice-ml in its virtualenv on the files in `folder`."""
    subprocess.run([str(python), str(BENCH / "dice_worker.py"), "--dir", str(folder),
                    "--timeout", str(timeout)], check=True,
                   env={**os.environ, "TQDM_DISABLE": "1"})
    raw = json.loads((folder / "dice.json").read_text())
    return {
        model: {method: Side([r["seconds"] for r in runs],
                             [np.array(r["cfs"], dtype=np.float64).reshape(-1, 30)
                              for r in runs],
                             [r["error"] for r in runs])
                for method, runs in methods.items()}
        for model, methods in raw.items()
    }


def metrics(side: Side, queries: np.ndarray, positive: Any, mad: np.ndarray,
            low: np.ndarray, high: np.ndarray) -> dict[str, float]:
    """Validity by re-scoring, sparsity, proximity, range share, time; over all answers."""
    before = positive(queries) >= 0.5
    valid, changed, proximity, in_range, answered = [], [], [], [], 0
    for i, rows in enumerate(side.answers):
        if len(rows) == 0:
            continue
        answered += 1
        x = queries[i]
        valid.extend((positive(rows) >= 0.5) != before[i])
        delta = np.abs(rows - x)
        changed.extend((delta > 1e-9 * np.maximum(1.0, np.abs(x))).sum(axis=1))
        proximity.extend((delta / mad).sum(axis=1))
        in_range.extend(((rows >= low) & (rows <= high)).all(axis=1))
    return {
        "answered": answered, "answers": len(valid),
        "valid": 100 * float(np.mean(valid)) if valid else float("nan"),
        "changed": float(np.mean(changed)) if changed else float("nan"),
        "proximity": float(np.mean(proximity)) if proximity else float("nan"),
        "in_range": 100 * float(np.mean(in_range)) if in_range else float("nan"),
        "median_ms": 1000 * statistics.median(side.seconds),
        "timeouts": sum(e == "timeout" for e in side.errors),
    }


def write_inputs(folder: Path, frame: pd.DataFrame, queries: np.ndarray,
                 models: dict[str, tuple[str, Any, Any]]) -> None:
    """Data as Parquet, LightGBM as its text model, scikit-learn models as skops."""
    frame.to_parquet(folder / "train.parquet")
    names = [c for c in frame.columns if c != "label"]
    pd.DataFrame(queries, columns=names).to_parquet(folder / "queries.parquet")
    models["lightgbm"][1].save_model(str(folder / "lightgbm.txt"))
    for name in ("hist_gradient_boosting", "logistic_regression"):
        sio.dump(models[name][1], folder / f"{name}.skops")


def report(table: dict[str, dict[str, dict[str, float]]], n_queries: int) -> None:
    """Print the table and the ratios against dice-ml's best method."""
    header = (f"{'model':<24}{'method':<14}{'answered':>9}{'valid %':>9}{'in range %':>11}"
              f"{'changed':>9}{'proximity':>11}{'median ms':>11}{'timeouts':>9}")
    print("\n" + header + "\n" + "-" * len(header))
    for model, rows in table.items():
        for method, m in rows.items():
            print(f"{model:<24}{method:<14}{m['answered']:>5}/{n_queries:<3}{m['valid']:>9.1f}"
                  f"{m['in_range']:>11.1f}{m['changed']:>9.2f}{m['proximity']:>11.2f}"
                  f"{m['median_ms']:>11.1f}{m['timeouts']:>9}")
    print("\nratios (targets: validity 100 %, changed <= 1, proximity <= 1, "
          "genetic/ours >= 20x, random/ours > 1x)")
    for model, rows in table.items():
        ours = rows["whylens"]
        dice = [rows[k] for k in ("dice random", "dice genetic") if k in rows]
        best_changed = min(d["changed"] for d in dice)
        best_proximity = min(d["proximity"] for d in dice)
        print(f"{model:<24} validity {ours['valid']:.1f} %; changed ours/best "
              f"{ours['changed'] / best_changed:.2f}; proximity ours/best "
              f"{ours['proximity'] / best_proximity:.2f}; speed genetic/ours "
              f"{rows['dice genetic']['median_ms'] / ours['median_ms']:.0f}x, random/ours "
              f"{rows['dice random']['median_ms'] / ours['median_ms']:.0f}x")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--timeout", type=float, default=60.0,
                        help="dice-ml seconds per query before it counts as no answer")
    args = parser.parse_args()
    python = ensure_dice_venv()
    frame = reference_data()
    features = frame.drop(columns=["label"])
    models = train_models(frame)
    rng = np.random.default_rng(7)
    queries = features.to_numpy(np.float64)[rng.choice(len(frame), args.queries,
                                                       replace=False)]
    folder = scratch_dir()
    write_inputs(folder, frame, queries, models)
    sides: dict[str, dict[str, Side]] = {name: {} for name in models}
    retimers = {}
    for name, (flavor, model_object, _) in models.items():
        sides[name]["whylens"], build_s, retimers[name] = run_ours(flavor, model_object,
                                                                   features, queries)
        print(f"  whylens on {name}: searcher built in {build_s:.2f} s, median "
              f"{1000 * statistics.median(sides[name]['whylens'].seconds):.1f} ms/query",
              flush=True)
    print(f"dice-ml: {args.queries} queries x 3 models x 2 methods, "
          f"{args.timeout:.0f} s limit per query ...", flush=True)
    for name, methods in run_dice(python, folder, args.timeout).items():
        for method, side in methods.items():
            sides[name][f"dice {method}"] = side
    for name, retime in retimers.items():
        # load on a shared machine drifts during the long dice-ml run: keep, per query,
        # the slower of our two timings
        ours = sides[name]["whylens"]
        ours.seconds = [max(a, b) for a, b in zip(ours.seconds, retime(), strict=True)]
    values = features.to_numpy(np.float64)
    mad = np.median(np.abs(values - np.median(values, axis=0)), axis=0)
    low, high = values.min(axis=0), values.max(axis=0)
    table = {name: {method: metrics(side, queries, models[name][2], mad, low, high)
                    for method, side in methods.items()}
             for name, methods in sides.items()}
    report(table, args.queries)


if __name__ == "__main__":
    main()
