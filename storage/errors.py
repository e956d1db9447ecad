"""Errors raised by the storage package."""

from __future__ import annotations


class StorageError(Exception):
    """Root of every storage failure."""


class StoreUnavailable(StorageError):
    """A backing store (Redis, SQLite, S3) could not be reached or failed."""

    def __init__(self, backend: str, reason: str) -> None:
        super().__init__(f"{backend} unavailable: {reason}")
        self.backend = backend
        self.reason = reason


class ArtifactNotFound(StorageError):
    """No object at this key in the artifact store."""

    def __init__(self, key: str) -> None:
        super().__init__(f"artifact not found: {key}")
        self.key = key


class ArtifactDigestMismatch(StorageError):
    """A model file's sha256 differs from the manifest's: the version is refused."""

    def __init__(self, key: str, expected: str, actual: str) -> None:
        super().__init__(f"sha256 mismatch for {key}: manifest says {expected}, file is {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class ManifestInvalid(StorageError):
    """A manifest could not be parsed or violates the artifact contract."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid manifest {key}: {reason}")
        self.key = key
        self.reason = reason


class SignatureInvalid(StorageError):
    """A manifest signature is missing, malformed or made by an untrusted key."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"signature refused for {key}: {reason}")
        self.key = key
        self.reason = reason


class UntrustedModelType(StorageError):
    """A skops file names a type outside the trusted list; it is never loaded."""

    def __init__(self, key: str, types: list[str]) -> None:
        super().__init__(f"refusing {key}: untrusted types {', '.join(types)}")
        self.key = key
        self.types = types


class CursorInvalid(StorageError):
    """A search cursor was not produced by this store."""

    def __init__(self, cursor: str) -> None:
        super().__init__("invalid cursor")
        self.cursor = cursor


class UnsupportedStoreUrl(StorageError):
    """No store implementation for this URL scheme (or the URL is malformed)."""

    def __init__(self, url: str, reason: str | None = None) -> None:
        detail = f": {reason}" if reason else ""
        super().__init__(f"no store for URL scheme of {url!r}{detail}")
        self.url = url
        self.reason = reason


class ArtifactKeyInvalid(StorageError):
    """An artifact key is not a safe relative '/'-path (absolute, `..`, empty segment)."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"invalid artifact key {key!r}: {reason}")
        self.key = key
        self.reason = reason


class ModelFormatInvalid(StorageError):
    """A verified model or background file cannot be parsed in its declared format."""

    def __init__(self, key: str, reason: str) -> None:
        super().__init__(f"cannot parse {key}: {reason}")
        self.key = key
        self.reason = reason


class SigningKeyInvalid(StorageError):
    """A signing or trusted public key is not a usable Ed25519 PEM key."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"invalid signing key: {reason}")
        self.reason = reason


class ModelNotFound(StorageError):
    """No published version of this model exists in the artifact store."""

    def __init__(self, name: str) -> None:
        super().__init__(f"model not found: {name}")
        self.name = name


class VersionNotFound(StorageError):
    """The model has no published version (or alias) by this name."""

    def __init__(self, name: str, version: str) -> None:
        super().__init__(f"version not found: {name}@{version}")
        self.name = name
        self.version = version


class VersionExists(StorageError):
    """A version is already published with different content; versions are immutable."""

    def __init__(self, name: str, version: str, reason: str = "different content") -> None:
        super().__init__(f"version {name}@{version} already exists: {reason}")
        self.name = name
        self.version = version
        self.reason = reason


class AliasInvalid(StorageError):
    """An alias name is malformed or collides with a version name."""

    def __init__(self, name: str, alias: str, reason: str) -> None:
        super().__init__(f"invalid alias {alias!r} for model {name}: {reason}")
        self.name = name
        self.alias = alias
        self.reason = reason


class SpoolFull(StorageError):
    """The outage spool reached its size cap: records are refused, never dropped silently."""

    def __init__(self, path: str, max_bytes: int) -> None:
        super().__init__(f"the outage spool {path} is full ({max_bytes} bytes) while the "
                         "trace store is unavailable")
        self.path = path
        self.max_bytes = max_bytes


class SpoolLocked(StorageError):
    """Another process holds the outage spool (each replica needs its own spool folder)."""

    def __init__(self, path: str) -> None:
        super().__init__(f"the outage spool {path} is locked by another process; give each "
                         "replica its own WHYLENS_SPOOL__DIR")
        self.path = path
