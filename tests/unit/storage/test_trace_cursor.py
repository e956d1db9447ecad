from __future__ import annotations

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storage.cursor import CursorPosition, decode_cursor, encode_cursor
from storage.errors import CursorInvalid


@given(st.integers(min_value=-(2**62), max_value=2**62), st.text(min_size=1, max_size=128))
def test_cursor_round_trips_any_position(event_ms: int, request_id: str) -> None:
    cursor = encode_cursor(event_ms, request_id)
    assert decode_cursor(cursor) == CursorPosition(event_ms, request_id)
    assert cursor.isascii() and "=" not in cursor and "+" not in cursor and "/" not in cursor


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()


@pytest.mark.parametrize("cursor", [
    "", "!!!!", "not a cursor", "a" * 2000, "é",
    encode_cursor(5, "r-1") + "=", encode_cursor(5, "r-1") + "AAA", "MTo1OnItMQB",
    _b64("2:5:r-1"), _b64("1:five:r-1"), _b64("1:5:"), _b64("1:5"), _b64("1:+5:r"),
    _b64("1: 5:r"), _b64("1:5_0:r"), base64.b64encode(b"\xff\xfe:1:r").decode(),
])
def test_garbage_cursor_is_refused(cursor: str) -> None:
    with pytest.raises(CursorInvalid):
        decode_cursor(cursor)


def test_precedes_orders_newest_first_then_request_id_descending() -> None:
    position = CursorPosition(100, "m")
    assert position.precedes(99, "z")
    assert position.precedes(100, "l")
    assert not position.precedes(100, "m")
    assert not position.precedes(100, "n")
    assert not position.precedes(101, "a")
