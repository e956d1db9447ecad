"""fasttreeshap v1/v2 timed in its own virtualenv (it needs numpy < 1.24), driven over pipes.

bench/treeshap.py starts this file with bench/.venv-fasttreeshap/bin/python and sends one
JSON command per line; each answer is one JSON line. Calls are timed here, around the
`shap_values` call only, so the pipe does not count and the caller can interleave peers.
Standard library, numpy and the venv's packages only: it never imports whylens.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import lightgbm as lgb
import numpy as np


def main() -> None:
    explainers: dict[str, object] = {}
    X = np.empty((0, 0))
    booster = None
    for line in sys.stdin:
        command = json.loads(line)
        op = command["op"]
        if op == "load":
            import fasttreeshap

            booster = lgb.Booster(model_file=command["model"])
            X = np.load(command["rows"])
            explainers, notes = {}, {}
            for algorithm in ("v1", "v2"):
                with warnings.catch_warnings(record=True) as caught:
                    warnings.simplefilter("always")
                    explainer = fasttreeshap.TreeExplainer(booster, algorithm=algorithm,
                                                           n_jobs=command["n_jobs"])
                    explainer.shap_values(X[:2], check_additivity=False)
                explainers[algorithm] = explainer
                notes[algorithm] = "; ".join(str(w.message) for w in caught)[:200]
            answer: dict[str, object] = {"ok": True, "version": fasttreeshap.__version__,
                                         "notes": notes}
        elif op == "explain":
            explainer = explainers[command["algorithm"]]
            rows = X[command["start"]:command["start"] + command["n"]]
            started = time.perf_counter()
            values = explainer.shap_values(rows, check_additivity=False)  # type: ignore[attr-defined]
            seconds = time.perf_counter() - started
            answer = {"seconds": seconds}
            if command.get("check") and booster is not None:
                reference = booster.predict(rows, pred_contrib=True)[:, :-1]
                answer["max_abs_diff"] = float(np.max(np.abs(np.asarray(values) - reference)))
        elif op == "quit":
            return
        else:
            answer = {"error": f"unknown op {op!r}"}
        print(json.dumps(answer), flush=True)


if __name__ == "__main__":
    main()
