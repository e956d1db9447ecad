"""Single-row TreeSHAP on the benchmark model only: the quick check of issue 7's first target.

Two measurements in one run, same rows, same model (500 trees x 63 leaves, cached in
bench/results by bench/treeshap.py):
- interleaved: the peers call by call in rotating order, as bench/treeshap.py does;
- one after another: each peer over all rows, then the next (no peer runs between two
  calls of another, so none evicts another's tables from the caches).

Run: .venv/bin/python -m bench.treeshap_single_row [--rows 300]
"""

from __future__ import annotations

import argparse
import statistics

import numpy as np

from bench.common import reference_data
from bench.treeshap import MODELS, line, peers, single_rows, trained
from explainers.lightgbm_model import infer_lightgbm_schema
from explainers.registry import build_explainable, warm_up
from explainers.tree_linear import LinearTreeExplainer, memory_budget


def one_after_another(found: dict, n: int) -> dict[str, float]:  # type: ignore[type-arg]
    """Median ms of one-row calls, each peer over all rows before the next."""
    return {name: statistics.median(peer(i, 1) for i in range(n)) * 1000
            for name, peer in found.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=300)
    args = parser.parse_args()
    warm_up()
    frame = reference_data()
    X = frame.drop(columns=["label"]).to_numpy(np.float64)
    booster, path = trained(frame, next(iter(MODELS)))
    schema = infer_lightgbm_schema(booster, frame.drop(columns=["label"]))
    explainer = build_explainable("lightgbm", booster, schema, background=X[-100:],
                                  memory_budget=memory_budget(path.stat().st_size)).explainer
    assert isinstance(explainer, LinearTreeExplainer)
    found = peers(booster, explainer, X, None)
    single_rows(found, 20)  # warm every peer's first-call paths
    print(line(f"interleaved, median of {args.rows}", single_rows(found, args.rows), "ms",
               faster="lower"))
    print(line(f"one after another, median of {args.rows}",
               one_after_another(found, args.rows), "ms", faster="lower"))


if __name__ == "__main__":
    main()
