"""Explanation jobs as stream fields: identifiers and decisions only, never features."""

from __future__ import annotations

import pytest

from storage.queue import ExplainJob, JobMalformed, StreamKeys


def test_a_job_survives_its_stream_fields() -> None:
    job = ExplainJob("r-1", "credit", "3", "near_threshold", "credit@4", 1_700_000_000_123,
                     reexplain=True, counterfactuals=2, incidents=("INC1", "INC,2"))
    fields = job.to_fields()
    assert all(isinstance(v, str) for v in fields.values())
    assert ExplainJob.from_fields(fields) == job
    assert ExplainJob.from_fields(ExplainJob("r", "m", "1", "s", "p", 5).to_fields()).reexplain \
        is False


@pytest.mark.parametrize("broken", [
    {"request_id": "r"},
    {"request_id": "r", "model": "m", "version": "1", "reason": "s", "policy": "p",
     "received_ms": "soon"},
    {"request_id": "r", "model": "m", "version": "1", "reason": "s", "policy": "p",
     "received_ms": "1", "incidents": "{}"},
])
def test_malformed_entries_are_refused(broken: dict[str, str]) -> None:
    with pytest.raises(JobMalformed):
        ExplainJob.from_fields(broken)


def test_stream_keys_share_one_hash_tag_that_no_model_can_have() -> None:
    keys = StreamKeys.named("wl", "explain")
    tags = {key[key.index("{"): key.index("}") + 1] for key in (keys.stream, keys.dead,
                                                                   keys.errors)}
    assert tags == {"{q:explain}"}
    with pytest.raises(ValueError, match="brace"):
        StreamKeys.named("w{l}", "explain")
