"""Records and frames encode to the float matrix and decode back."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from explainers.encoding import (
    RowEncoder,
    category_lookup,
    decode_frame,
    decode_value,
    encode_frame,
    encode_rows,
)
from explainers.errors import InvalidFeatureValue, SchemaMismatch
from explainers.types import FeatureKind, FeatureSpec, ModelSchema, Task

SCHEMA = ModelSchema(
    (
        FeatureSpec("age", FeatureKind.NUMERIC),
        FeatureSpec("zip", FeatureKind.CATEGORICAL, ("94110", "10001", "3")),
        FeatureSpec("plan", FeatureKind.CATEGORICAL, (1, 3, 12)),
        FeatureSpec("ratio", FeatureKind.CATEGORICAL, (0.5, 2.0)),
    ),
    Task.BINARY,
    (0, 1),
)


def test_records_encode_to_values_and_category_indices() -> None:
    X = encode_rows([{"age": 41, "zip": "10001", "plan": 12, "ratio": 2.0}], SCHEMA)
    np.testing.assert_array_equal(X, [[41.0, 1.0, 2.0, 1.0]])
    assert X.dtype == np.float64


def test_none_absent_and_unseen_values_encode_as_missing() -> None:
    X = encode_rows([{"age": None, "zip": "99999", "plan": None},
                     {"age": float("nan"), "zip": None, "plan": 7, "ratio": 0.25}], SCHEMA)
    assert np.isnan(X).all()


@pytest.mark.parametrize(("value", "index"), [
    ("3", 1.0), (3, 1.0), (3.0, 1.0), ("3.0", 1.0), ("12", 2.0), (True, 0.0),
])
def test_numbers_and_their_strings_match_integer_categories(value: object,
                                                            index: float) -> None:
    X = encode_rows([{"age": 1, "zip": None, "plan": value, "ratio": None}], SCHEMA)
    assert X[0, 2] == index


@pytest.mark.parametrize(("value", "index"), [(3, 2.0), (3.0, 2.0), ("3", 2.0), (94110, 0.0)])
def test_numbers_match_string_categories(value: object, index: float) -> None:
    X = encode_rows([{"age": 1, "zip": value, "plan": None, "ratio": None}], SCHEMA)
    assert X[0, 1] == index


def test_float_categories_match_their_text() -> None:
    X = encode_rows([{"age": 1, "zip": None, "plan": None, "ratio": "0.5"},
                     {"age": 1, "zip": None, "plan": None, "ratio": "2"}], SCHEMA)
    np.testing.assert_array_equal(X[:, 3], [0.0, 1.0])


def test_exact_value_wins_over_a_twin() -> None:
    lookup = category_lookup((3, "3"))
    assert lookup[3] == 0
    assert lookup["3"] == 1


def test_numeric_text_is_read_and_garbage_is_refused_without_echoing_it() -> None:
    assert encode_rows([{"age": "41.5"}], SCHEMA)[0, 0] == 41.5
    with pytest.raises(InvalidFeatureValue) as caught:
        encode_rows([{"age": "secret-value"}], SCHEMA)
    assert caught.value.feature == "age"
    assert "secret-value" not in str(caught.value)
    with pytest.raises(InvalidFeatureValue):
        encode_rows([{"zip": ["a"]}], SCHEMA)


def test_empty_batch_has_the_schema_width() -> None:
    assert RowEncoder(SCHEMA).encode([]).shape == (0, 4)


def test_decode_value_inverts_the_encoding() -> None:
    assert decode_value(SCHEMA.features[0], 41.0) == 41.0
    assert decode_value(SCHEMA.features[1], 2.0) == "3"
    assert decode_value(SCHEMA.features[2], 1.0) == 3
    assert decode_value(SCHEMA.features[1], math.nan) is None
    with pytest.raises(InvalidFeatureValue):
        decode_value(SCHEMA.features[1], 3.0)


def test_frame_encoding_matches_row_encoding() -> None:
    frame = pd.DataFrame({
        "age": [41, None, 30],
        "zip": pd.Categorical(["3", None, "10001"]),
        "plan": ["12", 3, None],
        "ratio": [0.5, np.nan, 7.0],
        "label": [1, 0, 1],
    })
    rows = frame.drop(columns="label").astype(object).where(frame.notna(), None)
    expected = encode_rows(rows.to_dict("records"), SCHEMA)
    encoded = encode_frame(frame, SCHEMA)
    np.testing.assert_array_equal(np.isnan(encoded), np.isnan(expected))
    np.testing.assert_allclose(encoded, expected)
    np.testing.assert_array_equal(encoded[0], [41.0, 2.0, 2.0, 0.0])


def test_frame_with_string_dtype_and_missing_column() -> None:
    frame = pd.DataFrame({"age": [1.0], "zip": pd.array(["94110"], dtype="str"),
                          "plan": [1], "ratio": [0.5]})
    np.testing.assert_array_equal(encode_frame(frame, SCHEMA), [[1.0, 0.0, 0.0, 0.0]])
    with pytest.raises(SchemaMismatch, match="ratio"):
        encode_frame(frame.drop(columns="ratio"), SCHEMA)


def test_decoded_frame_holds_raw_values_with_nan_for_missing() -> None:
    X = np.array([[41.0, 1.0, 2.0, np.nan], [np.nan, np.nan, 0.0, 1.0]])
    frame = decode_frame(X, SCHEMA)
    assert list(frame.columns) == list(SCHEMA.feature_names)
    assert frame["zip"].iloc[0] == "10001" and pd.isna(frame["zip"].iloc[1])
    np.testing.assert_array_equal(frame["plan"].to_numpy(), [12.0, 1.0])
    assert frame["plan"].dtype == np.float64
    assert pd.isna(frame["age"].iloc[1]) and pd.isna(frame["ratio"].iloc[0])


_RECORDS = st.fixed_dictionaries({
    "age": st.one_of(st.none(), st.floats(-1e9, 1e9, allow_nan=False)),
    "zip": st.one_of(st.none(), st.sampled_from(SCHEMA.features[1].categories)),
    "plan": st.one_of(st.none(), st.sampled_from(SCHEMA.features[2].categories)),
    "ratio": st.one_of(st.none(), st.sampled_from(SCHEMA.features[3].categories)),
})


@given(st.lists(_RECORDS, max_size=5))
def test_round_trip_through_encode_and_decode(records: list[dict[str, object]]) -> None:
    X = encode_rows(records, SCHEMA)
    decoded = [{spec.name: decode_value(spec, float(X[i, j]))
                for j, spec in enumerate(SCHEMA.features)} for i in range(len(records))]
    assert decoded == records
    again = encode_frame(decode_frame(X, SCHEMA), SCHEMA)
    np.testing.assert_array_equal(again, X)
