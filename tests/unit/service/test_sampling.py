from __future__ import annotations

import subprocess
import sys

from service.sampling.policy import DefaultPolicy, stable_fraction


def test_rate_is_respected_over_many_ids() -> None:
    policy = DefaultPolicy(rate=0.1, near_threshold=0.0, always_cohorts=frozenset())
    sampled = sum(policy.decide(f"r-{i}", {"score": 0.9}, {}).sampled for i in range(20000))
    assert 1800 < sampled < 2200


def test_decisions_are_identical_in_another_process() -> None:
    ids = [f"req-{i}" for i in range(50)]
    here = [stable_fraction(i) for i in ids]
    code = ("from service.sampling.policy import stable_fraction;"
            f"print([stable_fraction(i) for i in {ids!r}])")
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True, env={"PYTHONHASHSEED": "123", "PATH": ""},
                           cwd=".").stdout
    assert [float(x) for x in there.strip()[1:-1].split(",")] == here


def test_canary_cohort_and_near_threshold_come_first() -> None:
    policy = DefaultPolicy(rate=0.0, near_threshold=0.05, always_cohorts=frozenset({"canary"}))
    canary = policy.decide("a", {"score": 0.9}, {"cohort": "canary"})
    near = policy.decide("b", {"score": 0.52, "threshold": 0.5}, {})
    far = policy.decide("c", {"score": 0.9, "threshold": 0.5}, {})
    assert (canary.sampled, canary.reason) == (True, "canary")
    assert (near.sampled, near.reason) == (True, "near_threshold")
    assert (far.sampled, far.reason) == (False, None)
