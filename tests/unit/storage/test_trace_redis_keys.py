from __future__ import annotations

import itertools

import pytest
from redis.crc import key_slot

from storage.records import StoredTrace, TraceQuery
from storage.traces.redis_keys import RedisKeys

KEYS = RedisKeys("wl")


def test_model_keys_carry_the_model_hash_tag() -> None:
    trace = StoredTrace("r-1", "credit", "3", "canary", 1, b"", ("INC1",))
    tagged = [KEYS.trace("credit", "r-1"), KEYS.record("credit", "r-1"),
              *(k for k in KEYS.indexes_of(trace) if not k.startswith("wl:ix:"))]
    assert KEYS.trace("credit", "r-1") == "wl:{credit}:t:r-1"
    assert KEYS.record("credit", "r-1") == "wl:{credit}:r:r-1"
    assert KEYS.lookup("r-1") == "wl:rid:r-1"
    assert len(tagged) == 7
    assert {key_slot(k.encode()) for k in tagged} == {key_slot(b"credit")}


def test_names_cannot_break_the_tag_or_collide() -> None:
    assert KEYS.trace("a}b:{c", "r") == "wl:{a%7Db%3A%7Bc}:t:r"
    one = KEYS.index_for(TraceQuery(model="m", version="1:x", reason="y")).key
    two = KEYS.index_for(TraceQuery(model="m", version="1", reason="x:y")).key
    assert one != two
    with pytest.raises(ValueError, match="prefix"):
        RedisKeys("w{l}")


def test_every_filter_combination_maps_to_one_index_holding_its_traces() -> None:
    trace = StoredTrace("r", "credit", "3", "canary", 1, b"", ("INC1",))
    member_of = set(KEYS.indexes_of(trace))
    chosen = set()
    for model, version, reason, incident in itertools.product(
            (None, "credit"), (None, "3"), (None, "canary"), (None, "INC1")):
        if version is not None and model is None:
            continue
        choice = KEYS.index_for(TraceQuery(model=model, version=version, reason=reason,
                                           incident=incident))
        assert choice.key in member_of and choice.holds(trace)
        chosen.add(choice.key)
    assert chosen == member_of
    assert not KEYS.index_for(TraceQuery(model="credit", reason="canary")).holds(
        StoredTrace("r", "credit", "3", "sampled", 1, b""))
