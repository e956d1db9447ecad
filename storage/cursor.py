"""Opaque search cursors: the position (event time, request ID) of the last item served."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from storage.errors import CursorInvalid

# A version tag lets the format change later without misreading old cursors.
_FORMAT = "1"
# Generous for a 128-character request ID, small enough to refuse junk before decoding.
_MAX_CURSOR_CHARS = 1024
_EVENT_MS = re.compile(r"-?[0-9]{1,19}")


@dataclass(frozen=True, slots=True)
class CursorPosition:
    """Where a page ended; the next page starts strictly after it (newest first)."""

    event_ms: int
    request_id: str

    def precedes(self, event_ms: int, request_id: str) -> bool:
        """Tell whether (event_ms, request_id) comes after this position, newest first."""
        return event_ms < self.event_ms or (
            event_ms == self.event_ms and request_id < self.request_id
        )


def encode_cursor(event_ms: int, request_id: str) -> str:
    """Return the opaque cursor of a position."""
    raw = f"{_FORMAT}:{event_ms}:{request_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> CursorPosition:
    """Return the position of a cursor made by `encode_cursor`.

    Raises:
        CursorInvalid: the text is not such a cursor.
    """
    if not cursor or len(cursor) > _MAX_CURSOR_CHARS or not cursor.isascii():
        raise CursorInvalid(cursor)
    try:
        raw = base64.b64decode(cursor + "=" * (-len(cursor) % 4), altchars=b"-_",
                               validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise CursorInvalid(cursor) from exc
    parts = text.split(":", 2)
    if len(parts) != 3 or parts[0] != _FORMAT or not _EVENT_MS.fullmatch(parts[1]):
        raise CursorInvalid(cursor)
    position = CursorPosition(int(parts[1]), parts[2])
    # Only the canonical spelling is accepted, so one position has exactly one cursor.
    if not position.request_id or encode_cursor(position.event_ms, position.request_id) != cursor:
        raise CursorInvalid(cursor)
    return position

