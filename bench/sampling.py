"""Sampling policy cost per record against the whole ingest cost per record, in one run.

The ingest side is the real pipeline in process (validation, sealing, SQLite record log,
drift windows, explanations of the sampled records); the policy side is the engine's
`decide` on the same records with a realistic five-rule JMESPath policy and a budget.
The issue's bar: policy evaluation below 10 % of the per-record ingest cost.

Run (from the repository root): .venv/bin/python -m bench.sampling [--records 6000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import time
from typing import Any

import numpy as np

from bench.common import reference_data, rows_of, scratch_dir, train_reference_model
from service.app import build_runtime
from service.ingest import ingest
from service.publishing import PublishRequest, promote, publish_from_files
from service.runtime import Runtime
from service.sampling.document import validate_policy
from service.settings import Settings
from service.validation import Envelope, parse_envelope

POLICY: dict[str, Any] = {
    "rules": [
        {"reason": "canary", "when": "context.cohort == 'canary'"},
        {"reason": "near_threshold",
         "when": "distance(prediction.score, prediction.threshold) <= `0.02`"},
        {"reason": "large_f00", "when": "features.f00 > `3.0`", "rate": 0.5},
        {"reason": "mobile_low", "when": "context.segment == 'mobile' && features.f01 < `-2`"},
        {"reason": "sampled", "rate": 0.05},
    ],
    "budget": {"per_second": 100_000, "exempt": ["canary", "incident"]},
}


def make_records(frame: Any, booster: Any, n: int, tag: str) -> list[dict[str, Any]]:
    """Prediction records with the model's own scores, a few canary and mobile ones."""
    rows = rows_of(frame.iloc[:n])
    scores = booster.predict(frame.drop(columns=["label"]).iloc[:n].to_numpy())
    rng = np.random.default_rng(1)
    records = []
    for i, (row, score) in enumerate(zip(rows, scores, strict=True)):
        context = {"cohort": "canary" if rng.random() < 0.02 else "production",
                   "segment": "mobile" if rng.random() < 0.3 else "web"}
        records.append({"request_id": f"{tag}-{i}", "model": "ref", "features": row,
                        "prediction": {"score": float(score), "threshold": 0.5},
                        "context": context})
    return records


def envelopes_of(records: list[dict[str, Any]]) -> list[Envelope]:
    """Parsed envelopes, as ingest has them when it asks the policy."""
    out = []
    for record in records:
        parsed = parse_envelope(record, path="", received_ms=0, max_string=256,
                                traceparent=None)
        assert not isinstance(parsed, list)
        out.append(parsed)
    return out


async def time_ingest(runtime: Runtime, records: list[dict[str, Any]], batch: int) -> float:
    """Seconds per record of ingest, in batches."""
    started = time.perf_counter()
    for start in range(0, len(records), batch):
        await ingest(runtime, records[start: start + batch], batch=True, traceparent=None)
    return (time.perf_counter() - started) / len(records)


async def time_policy(runtime: Runtime,
                      envelopes: list[Envelope]) -> tuple[float, dict[str, int]]:
    """Seconds per record of the policy step of ingest, and the reasons it gave."""
    engine = runtime.policy
    reasons: dict[str, int] = {}
    started = time.perf_counter()
    for envelope in envelopes:
        await engine.ensure_loaded("ref")
        decision = engine.decide(envelope, "ref", "1")
        key = decision.reason if decision.sampled else "not_sampled"
        reasons[key] = reasons.get(key, 0) + 1
    return (time.perf_counter() - started) / len(envelopes), reasons


async def main() -> None:
    """Publish a reference model with the policy, then time both sides in rounds."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--records", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, default=100)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    root = scratch_dir()
    frame = reference_data(max(20_000, args.records))
    booster = train_reference_model(frame, n_estimators=200)
    booster.save_model(str(root / "model.txt"))
    frame.to_parquet(root / "train.parquet")
    settings = Settings(data_dir=root / "data", auth="off")
    await publish_from_files(settings, PublishRequest(
        name="ref", version="1", model_path=root / "model.txt",
        train_path=root / "train.parquet", label="label"))
    await promote(settings, "ref", "1", "production")
    runtime = await build_runtime(settings)
    document = validate_policy(POLICY, max_counterfactuals=settings.limits.counterfactuals)
    runtime.policy.use("ref", await runtime.policy.store.publish("ref", document,
                                                                 updated_by="bench"))
    per_round = args.records // args.rounds
    ingest_s: list[float] = []
    policy_s: list[float] = []
    reasons: dict[str, int] = {}
    await time_ingest(runtime, make_records(frame, booster, 200, "warm"), args.batch)
    for r in range(args.rounds):
        records = make_records(frame.iloc[r * per_round:], booster, per_round, f"r{r}")
        envelopes = envelopes_of(records)
        # Interleaved, same records: both sides see the same machine load.
        policy_s.append((await time_policy(runtime, envelopes))[0])
        ingest_s.append(await time_ingest(runtime, records, args.batch))
        _, seen = await time_policy(runtime, envelopes)
        for key, count in seen.items():
            reasons[key] = reasons.get(key, 0) + count
    ingest_med = statistics.median(ingest_s)
    policy_med = statistics.median(policy_s)
    print(f"records per round {per_round}, rounds {args.rounds}, batch {args.batch}, "
          f"model 200 trees x 30 features, policy {len(POLICY['rules'])} rules + budget")
    print(f"decisions: {dict(sorted(reasons.items()))}")
    print(f"ingest per record (whole pipeline): {ingest_med * 1e6:8.1f} us "
          f"(rounds: {', '.join(f'{s * 1e6:.0f}' for s in ingest_s)})")
    print(f"policy per record (ensure + decide):{policy_med * 1e6:8.1f} us "
          f"(rounds: {', '.join(f'{s * 1e6:.1f}' for s in policy_s)})")
    print(f"policy / ingest: {policy_med / ingest_med:.1%}  (bar: < 10 %)")
    await runtime.traces.close()


if __name__ == "__main__":
    asyncio.run(main())
