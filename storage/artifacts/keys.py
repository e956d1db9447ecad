"""Rules every artifact store applies to keys, so backends agree on what a key is.

A key is a relative '/'-separated path: no leading '/', no empty, `.` or `..` segment,
no backslash or control character. A list prefix follows the same rules but may be
empty, end with '/', or stop in the middle of a segment (S3 prefix semantics).
"""

from __future__ import annotations

from storage.errors import ArtifactKeyInvalid

MAX_KEY_BYTES = 1024
"""S3's limit on object key length; the local store applies it too so both agree."""


def split_key(key: str) -> list[str]:
    """Return the segments of a valid key; raise `ArtifactKeyInvalid` otherwise."""
    if not key:
        raise ArtifactKeyInvalid(key, "empty key")
    if key.endswith("/"):
        raise ArtifactKeyInvalid(key, "a key names an object, not a folder (trailing '/')")
    return _check_segments(key)


def check_prefix(prefix: str) -> str:
    """Return `prefix` when it is a valid list prefix; raise `ArtifactKeyInvalid` otherwise."""
    if prefix:
        _check_segments(prefix.removesuffix("/"))
    return prefix


def _check_segments(key: str) -> list[str]:
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise ArtifactKeyInvalid(key, f"longer than {MAX_KEY_BYTES} bytes")
    if key.startswith("/"):
        raise ArtifactKeyInvalid(key, "absolute paths are refused; keys are relative")
    if "\\" in key or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key):
        raise ArtifactKeyInvalid(key, "backslash or control character")
    parts = key.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ArtifactKeyInvalid(key, f"segment {part!r} would escape or alias the root")
    return parts
