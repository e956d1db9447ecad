"""Choose the artifact store for a URI through one explicit scheme table.

Accepted forms:

- `file:///abs/path` (also `file://localhost/abs/path`, per RFC 8089);
- `file://relative/path` (non-standard but common: relative to the working directory);
- a bare path, absolute or relative (`/var/lib/whylens/artifacts`, `./artifacts`);
- `s3://bucket` or `s3://bucket/prefix`.

Percent-escapes in file URIs are decoded. Anything else, including a query or fragment
(which would otherwise be silently dropped from a path), is `UnsupportedStoreUrl`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote, urlsplit

from storage.artifacts.local import LocalArtifactStore
from storage.artifacts.s3 import S3ArtifactStore
from storage.errors import UnsupportedStoreUrl
from storage.protocols import ArtifactStore

# A scheme is letters then letters/digits/+.-, followed by ':'; one letter would be a
# Windows drive, which we do not support, so require two.
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
# S3 bucket naming rules (lowercase, digits, dots, hyphens; 3-63 characters).
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def open_artifact_store(uri: str, *, s3_endpoint_url: str | None = None) -> ArtifactStore:
    """Return the store for `uri`; nothing is contacted until the first call."""
    match = _SCHEME.match(uri)
    if match is None:
        if not uri.strip():
            raise UnsupportedStoreUrl(uri, "empty artifact store location")
        return LocalArtifactStore(Path(uri))
    opener = _OPENERS.get(match.group(1).lower())
    if opener is None:
        raise UnsupportedStoreUrl(uri, f"supported schemes are {', '.join(sorted(_OPENERS))}")
    return opener(uri, s3_endpoint_url)


def _open_file(uri: str, _endpoint: str | None) -> ArtifactStore:
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        raise UnsupportedStoreUrl(uri, "a file URI takes no query or fragment")
    if parts.netloc in ("", "localhost"):
        path = unquote(parts.path)
    else:
        path = unquote(parts.netloc + parts.path)
    if not path:
        raise UnsupportedStoreUrl(uri, "no path")
    return LocalArtifactStore(Path(path))


def _open_s3(uri: str, endpoint: str | None) -> ArtifactStore:
    parts = urlsplit(uri)
    if parts.query or parts.fragment:
        raise UnsupportedStoreUrl(uri, "an s3 URI takes no query or fragment")
    if not _BUCKET.match(parts.netloc):
        raise UnsupportedStoreUrl(uri, f"{parts.netloc!r} is not a valid bucket name")
    return S3ArtifactStore(parts.netloc, unquote(parts.path), endpoint_url=endpoint)


_OPENERS: dict[str, Callable[[str, str | None], ArtifactStore]] = {
    "file": _open_file,
    "s3": _open_s3,
}
