"""Sampling policy: rule order, stable rates, JMESPath conditions, budget, incident mode."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from service.errors import RecordInvalid
from service.sampling.document import PolicyDocument, validate_policy
from service.sampling.engine import SamplingEngine, SamplingMetrics
from service.sampling.policy import default_policy_document, stable_fraction
from service.sampling.store import PolicyStore
from service.settings import SamplingSettings
from service.validation import Envelope
from storage.artifacts.local import LocalArtifactStore
from storage.incidents.records import INCIDENT_CLOSED, INCIDENT_OPEN, StoredIncident

ROOT = Path(__file__).resolve().parents[3]


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def envelope(request_id: str, *, score: float = 0.9, threshold: float = 0.5,
             cohort: str | None = None, **features: Any) -> Envelope:
    context = {} if cohort is None else {"cohort": cohort}
    return Envelope(request_id=request_id, model="credit", version=None,
                    features={"amount": 100.0, "segment": "web", **features},
                    prediction={"score": score, "threshold": threshold}, timestamp=None,
                    event_ms=0, action="approved", context=context)


def engine_for(tmp_path: Path, document: PolicyDocument | dict[str, Any],
               clock: FakeClock | None = None, *,
               registry: CollectorRegistry | None = None) -> SamplingEngine:
    store = PolicyStore(LocalArtifactStore(tmp_path / "artifacts"), max_counterfactuals=10)
    if isinstance(document, dict):
        document = validate_policy(document, max_counterfactuals=10)
    kwargs = {} if clock is None else {"clock": clock}
    metrics = SamplingMetrics(registry or CollectorRegistry())
    return SamplingEngine(store, document, metrics, **kwargs)


def decide(engine: SamplingEngine, env: Envelope) -> tuple[bool, str | None]:
    decision = engine.decide(env, "credit", "3")
    return decision.sampled, decision.reason


POLICY: dict[str, Any] = {
    "rules": [
        {"reason": "canary", "when": "context.cohort == 'canary'", "counterfactuals": 2},
        {"reason": "test_traffic", "when": "features.segment == 'test'", "rate": 0},
        {"reason": "near_threshold",
         "when": "distance(prediction.score, prediction.threshold) <= `0.05`"},
        {"reason": "large_amount", "when": "features.amount > `10000`", "rate": 0.5},
        {"reason": "sampled", "rate": 0.1},
    ],
}


def test_first_matching_rule_decides_and_names_the_reason(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, POLICY)
    canary_near = envelope("a", cohort="canary", score=0.51)
    assert decide(engine, canary_near) == (True, "canary")
    assert engine.decide(canary_near, "credit", "3").counterfactuals == 2
    assert decide(engine, envelope("b", score=0.52)) == (True, "near_threshold")
    # A rate-0 rule claims its records: the near-threshold rule after it never sees them.
    assert decide(engine, envelope("c", score=0.52, segment="test")) == (False, None)
    assert engine.decide(envelope("d"), "credit", "3").policy == "credit@default"


def test_rates_are_stable_hashes_below_the_rate(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, POLICY)
    ids = [f"r-{i}" for i in range(10_000)]
    large = {rid for rid in ids if decide(engine, envelope(rid, amount=20_000.0))[0]}
    ordinary = {rid for rid in ids if decide(engine, envelope(rid))[0]}
    assert large == {rid for rid in ids if stable_fraction(rid) < 0.5}
    assert ordinary == {rid for rid in ids if stable_fraction(rid) < 0.1}
    assert 880 < len(ordinary) < 1120
    assert ordinary <= large  # one hash for every rule: rates nest


def test_decisions_are_identical_in_another_process(tmp_path: Path) -> None:
    ids = [f"req-{i}" for i in range(300)]
    cases = [{"request_id": rid, "score": 0.5 + (i % 10) / 100, "amount": 5000.0 * (i % 4),
              "cohort": "canary" if i % 17 == 0 else None} for i, rid in enumerate(ids)]
    engine = engine_for(tmp_path, POLICY)
    here = [list(decide(engine, envelope(c["request_id"], score=c["score"], cohort=c["cohort"],
                                         amount=c["amount"]))) for c in cases]
    code = f"""
import json, sys
from pathlib import Path
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_sampling import engine_for, envelope, decide, POLICY
engine = engine_for(Path({str(tmp_path / 'other')!r}), POLICY)
cases = json.loads(sys.stdin.read())
print(json.dumps([list(decide(engine, envelope(c["request_id"], score=c["score"],
                                               cohort=c["cohort"], amount=c["amount"])))
                  for c in cases]))
"""
    there = subprocess.run([sys.executable, "-c", code], input=json.dumps(cases),
                           capture_output=True, text=True, check=True,
                           env={"PYTHONHASHSEED": "123", "PATH": "", "PYTHONPATH": str(ROOT)},
                           cwd=ROOT).stdout
    assert json.loads(there) == here
    assert sum(sampled for sampled, _ in here) > 0


def test_a_rule_failing_on_a_record_does_not_match_and_is_counted(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    engine = engine_for(tmp_path, {"rules": [
        {"reason": "big", "when": "abs(features.amount) > `10`"},
        {"reason": "rest"}]}, registry=registry)
    assert decide(engine, envelope("a", amount=None)) == (True, "rest")
    assert decide(engine, envelope("b", amount=-50.0)) == (True, "big")
    assert decide(engine, envelope("c", amount="many")) == (True, "rest")
    # Two failures of rule 0 (null, then a string for abs()); the good record is no error.
    assert registry.get_sample_value("whylens_policy_rule_errors_total",
                                     {"model": "credit", "rule": "0"}) == 2
    assert registry.get_sample_value("whylens_policy_rule_errors_total",
                                     {"model": "credit", "rule": "1"}) is None


def test_budget_defers_beyond_its_rate_and_exempt_reasons_pass(tmp_path: Path) -> None:
    clock = FakeClock()
    engine = engine_for(tmp_path, {
        "rules": [{"reason": "canary", "when": "context.cohort == 'canary'"},
                  {"reason": "sampled"}],
        "budget": {"per_second": 2, "burst": 3, "exempt": ["canary"]}}, clock)
    first = [engine.decide(envelope(f"x{i}"), "credit", "3") for i in range(5)]
    assert [d.sampled for d in first] == [True, True, True, False, False]
    assert all(d.deferred and d.reason == "sampled" for d in first[3:])
    assert all(decide(engine, envelope(f"c{i}", cohort="canary")) == (True, "canary")
               for i in range(10))
    clock.now += 1.0  # two tokens back
    after = [engine.decide(envelope(f"y{i}"), "credit", "3").sampled for i in range(3)]
    assert after == [True, True, False]


def test_incident_mode_explains_everything_until_closed(tmp_path: Path) -> None:
    engine = engine_for(tmp_path, {"rules": [{"reason": "sampled", "rate": 0.0}],
                                   "budget": {"per_second": 1, "burst": 1}})
    incident = StoredIncident(incident_id="INC1", model="credit", title="t", severity=2,
                              state=INCIDENT_OPEN, explain_all=True, opened_ms=1)
    quiet = StoredIncident(incident_id="INC2", model="credit", title="t", severity=4,
                           state=INCIDENT_OPEN, explain_all=False, opened_ms=2)
    assert decide(engine, envelope("a")) == (False, None)
    engine.set_open_incidents([incident, quiet])
    decisions = [engine.decide(envelope(f"i{i}"), "credit", "3") for i in range(20)]
    assert all(d.sampled and d.reason == "incident" and d.incidents == ("INC1",)
               for d in decisions)  # exempt from the budget by default
    assert decide(engine, envelope("other")) == (True, "incident")
    engine.close_incident(replace(incident, state=INCIDENT_CLOSED, closed_ms=3))
    assert decide(engine, envelope("after")) == (False, None)


def test_default_policy_keeps_the_settings_behaviour(tmp_path: Path) -> None:
    document = default_policy_document(SamplingSettings(rate=0.0, near_threshold=0.05,
                                                        always_cohorts=["canary"]))
    engine = engine_for(tmp_path, document)
    assert decide(engine, envelope("a", cohort="canary")) == (True, "canary")
    assert decide(engine, envelope("b", score=0.52)) == (True, "near_threshold")
    assert decide(engine, envelope("c", score=0.9)) == (False, None)


@pytest.mark.parametrize(("policy", "field"), [
    ({"rules": [{"reason": "a"}, {"reason": "b"}, {"reason": "c", "when": "features.x =="}]},
     "rules[2].when"),
    ({"rules": [{"reason": "a", "when": "nope(features.x)"}]}, "rules[0].when"),
    ({"rules": [{"reason": "incident"}]}, "rules[0].reason"),
    ({"rules": [{"reason": "a", "rate": 1.5}]}, "rules[0].rate"),
    ({"rules": [{"reason": "a", "counterfactuals": 11}]}, "rules[0].counterfactuals"),
    ({"rules": [{"reason": "a", "unknown": 1}]}, "rules[0].unknown"),
    ({"budget": {"per_second": 0}}, "budget.per_second"),
])
def test_invalid_policies_name_the_field(policy: dict[str, Any], field: str) -> None:
    with pytest.raises(RecordInvalid) as caught:
        validate_policy(policy, max_counterfactuals=10)
    assert field in [e.field for e in caught.value.errors]
