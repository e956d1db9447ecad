"""Published model versions in an artifact store: publish, verify and load, aliases.

Layout under the store root::

    models/<name>/<version>/manifest.json
    models/<name>/<version>/manifest.sig          (optional, see storage/signing.py)
    models/<name>/<version>/model.txt | model.skops
    models/<name>/<version>/background.parquet
    models/<name>/aliases.json                    ({"aliases": {...}, "updated_at": ...})

A version exists once its `manifest.json` exists: publish writes every file first, the
signature next and the manifest last, so a reader never sees a manifest whose files are
missing. Versions are immutable. `load` verifies the signature (when trusted keys are
configured) and every file's sha256 before anything parses the files.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from storage.errors import (
    AliasInvalid,
    ArtifactDigestMismatch,
    ArtifactNotFound,
    ManifestInvalid,
    ModelNotFound,
    SignatureInvalid,
    VersionExists,
    VersionNotFound,
)
from storage.manifest import Aliases, FileEntry, Manifest
from storage.protocols import ArtifactStore
from storage.signing import index_public_keys, sign_manifest, verify_with_keys

logger = logging.getLogger(__name__)

MANIFEST = "manifest.json"
SIGNATURE = "manifest.sig"
ALIASES = "aliases.json"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
"""Model names, versions, aliases, roles and file names: one safe path segment each."""
_RESERVED_FILES = frozenset({MANIFEST, SIGNATURE})


@dataclass(frozen=True, slots=True)
class LoadedVersion:
    """A verified version: its manifest, the manifest's sha256, and file bytes by role."""

    manifest: Manifest
    manifest_sha256: str
    files: dict[str, bytes] = field(repr=False)


def version_sort_key(version: str) -> tuple[tuple[int, int, str], ...]:
    """Order versions naturally: digit runs compare as numbers ("2" < "10")."""
    return tuple(
        (0, int(part), "") if part.isdigit() else (1, 0, part)
        for part in re.split(r"(\d+)", version)
        if part
    )


class ModelCatalog:
    """Publishes, verifies and loads model versions kept in an `ArtifactStore`."""

    def __init__(self, store: ArtifactStore, *, trusted_public_keys: Sequence[bytes] = ()) -> None:
        self.store = store
        self._trusted = index_public_keys(trusted_public_keys)

    @property
    def signature_required(self) -> bool:
        """True when trusted keys are configured: unsigned versions are then refused."""
        return bool(self._trusted)

    async def publish(
        self,
        manifest: Manifest | Mapping[str, Any],
        files: Mapping[str, tuple[str, bytes]],
        *,
        signing_key_pem: bytes | None = None,
    ) -> Manifest:
        """Write a new version: files, then signature, then manifest; return the manifest.

        `manifest` is a Manifest or a mapping of its fields; its `files` are ignored and
        recomputed (sha256 and size) from `files`, a mapping role → (file name, bytes)
        that must include the `model` role. Re-publishing identical content (ignoring
        `created_at`) is a no-op that returns the stored manifest and adds a missing
        signature; different content raises `VersionExists`.

        The existence check is not atomic across two publishers racing on one version;
        the loser's files may then mix with the winner's manifest, which `load` refuses
        by digest rather than serving a mixed version.
        """
        final = _build_manifest(manifest, files)
        name, version = final.name, final.version
        data = _encode(final)
        existing = await self._existing(final)
        if existing is not None:
            stored_bytes, stored = existing
            sig_key = _key(name, version, SIGNATURE)
            if signing_key_pem is not None and not await self.store.exists(sig_key):
                await self.store.write(sig_key, self._sign(stored_bytes, signing_key_pem, stored))
            return stored
        if version in (await self._read_aliases(name)).aliases:
            raise ManifestInvalid(_key(name, version, MANIFEST), "version name is an alias")
        if signing_key_pem is None and self._trusted:
            # Refuse to publish what this catalog would refuse to load.
            raise SignatureInvalid(_key(name, version, MANIFEST),
                                   "trusted keys are configured; publish needs a signing key")
        signature = None if signing_key_pem is None else self._sign(data, signing_key_pem, final)
        await asyncio.gather(
            *(self.store.write(_key(name, version, path), content)
              for path, content in files.values())
        )
        if signature is not None:
            await self.store.write(_key(name, version, SIGNATURE), signature)
        await self.store.write(_key(name, version, MANIFEST), data)
        logger.info("published model version", extra={"model": name, "version": version,
                                                         "signed": signature is not None})
        return final

    async def load(self, name: str, version: str) -> LoadedVersion:
        """Read and verify a version: signature, manifest, then every file's sha256.

        Raises `VersionNotFound`, `SignatureInvalid`, `ManifestInvalid`,
        `ArtifactDigestMismatch` (naming the file) or `ArtifactNotFound` (a listed file
        is missing). File bytes are returned only once all digests match.
        """
        data = await self._read_manifest_bytes(name, version)
        if self._trusted:
            await self._verify_signature(name, version, data)
        manifest = _parse_manifest(data, name=name, version=version)
        contents = await asyncio.gather(
            *(self.store.read(_key(name, version, entry.path))
              for entry in manifest.files.values())
        )
        files: dict[str, bytes] = {}
        for (role, entry), content in zip(manifest.files.items(), contents, strict=True):
            key = _key(name, version, entry.path)
            actual = hashlib.sha256(content).hexdigest()
            if actual != entry.sha256:
                raise ArtifactDigestMismatch(key, entry.sha256, actual)
            if len(content) != entry.size:
                reason = f"size of {key} is {len(content)}, manifest says {entry.size}"
                raise ManifestInvalid(_key(name, version, MANIFEST), reason)
            files[role] = content
        return LoadedVersion(manifest, hashlib.sha256(data).hexdigest(), files)

    async def read_manifest(self, name: str, version: str) -> Manifest:
        """Return a version's manifest, validated but otherwise unverified (for listings)."""
        data = await self._read_manifest_bytes(name, version)
        return _parse_manifest(data, name=name, version=version)

    async def list_models(self) -> list[str]:
        """Return the names of models with at least one published version, sorted."""
        names = {parts[1] for parts in _manifest_keys(await self.store.list("models/"))}
        return sorted(names)

    async def list_versions(self, name: str) -> list[str]:
        """Return the published versions of a model in natural order; `ModelNotFound` if none."""
        if not _NAME.fullmatch(name):
            raise ModelNotFound(name)
        keys = await self.store.list(f"models/{name}/")
        versions = [parts[2] for parts in _manifest_keys(keys) if parts[1] == name]
        if not versions:
            raise ModelNotFound(name)
        return sorted(versions, key=lambda v: (version_sort_key(v), v))

    async def aliases(self, name: str) -> dict[str, str]:
        """Return alias → version for a model (empty when none are set)."""
        document = await self._read_aliases(name)
        if not document.aliases:
            await self.list_versions(name)  # raises ModelNotFound for an unknown model
        return dict(document.aliases)

    async def set_alias(self, name: str, alias: str, version: str) -> str | None:
        """Point `alias` at an existing version; return the version it pointed to before.

        aliases.json is replaced atomically, but the update is a read-modify-write:
        two operators promoting at the same instant can lose one change. Promotion is a
        rare operator action, so this is accepted rather than adding a lock.
        """
        if not _NAME.fullmatch(alias):
            raise AliasInvalid(name, alias, f"must match {_NAME.pattern}")
        if not _NAME.fullmatch(name) or not _NAME.fullmatch(version):
            raise VersionNotFound(name, version)
        if not await self.store.exists(_key(name, version, MANIFEST)):
            raise VersionNotFound(name, version)
        if await self.store.exists(_key(name, alias, MANIFEST)):
            raise AliasInvalid(name, alias, "a version has this name")
        document = await self._read_aliases(name)
        updated = Aliases(aliases={**document.aliases, alias: version},
                          updated_at=datetime.now(UTC).isoformat().replace("+00:00", "Z"))
        await self.store.write(f"models/{name}/{ALIASES}",
                               (updated.model_dump_json(indent=2) + "\n").encode("utf-8"))
        previous = document.aliases.get(alias)
        logger.info("alias set", extra={"model": name, "alias": alias, "version": version,
                                        "previous": previous})
        return previous

    async def resolve(self, name: str, version_or_alias: str) -> str:
        """Return the version meant by a version name or an alias (a version wins)."""
        if not _NAME.fullmatch(name) or not _NAME.fullmatch(version_or_alias):
            raise VersionNotFound(name, version_or_alias)
        if await self.store.exists(_key(name, version_or_alias, MANIFEST)):
            return version_or_alias
        target = (await self._read_aliases(name)).aliases.get(version_or_alias)
        if target is not None:
            return target
        await self.list_versions(name)  # raises ModelNotFound for an unknown model
        raise VersionNotFound(name, version_or_alias)

    def _sign(self, data: bytes, signing_key_pem: bytes, manifest: Manifest) -> bytes:
        signature = sign_manifest(data, signing_key_pem)
        if self._trusted:
            # A key this catalog does not trust would publish a version it refuses to load;
            # fail before any byte is written.
            key = _key(manifest.name, manifest.version, MANIFEST)
            verify_with_keys(data, signature, self._trusted, key=key)
        return signature

    async def _existing(self, final: Manifest) -> tuple[bytes, Manifest] | None:
        key = _key(final.name, final.version, MANIFEST)
        try:
            data = await self.store.read(key)
        except ArtifactNotFound:
            return None
        try:
            stored = _parse_manifest(data, name=final.name, version=final.version)
        except ManifestInvalid as exc:
            reason = f"stored manifest is invalid ({exc.reason})"
            raise VersionExists(final.name, final.version, reason) from exc
        if _comparable(stored) != _comparable(final):
            raise VersionExists(final.name, final.version)
        return data, stored

    async def _read_manifest_bytes(self, name: str, version: str) -> bytes:
        if not _NAME.fullmatch(name) or not _NAME.fullmatch(version):
            raise VersionNotFound(name, version)
        try:
            return await self.store.read(_key(name, version, MANIFEST))
        except ArtifactNotFound as exc:
            raise VersionNotFound(name, version) from exc

    async def _verify_signature(self, name: str, version: str, data: bytes) -> None:
        key = _key(name, version, MANIFEST)
        try:
            signature = await self.store.read(_key(name, version, SIGNATURE))
        except ArtifactNotFound as exc:
            reason = f"unsigned (no {SIGNATURE}) and trusted keys are configured"
            raise SignatureInvalid(key, reason) from exc
        verify_with_keys(data, signature, self._trusted, key=key)

    async def _read_aliases(self, name: str) -> Aliases:
        if not _NAME.fullmatch(name):
            raise ModelNotFound(name)
        key = f"models/{name}/{ALIASES}"
        try:
            data = await self.store.read(key)
        except ArtifactNotFound:
            return Aliases()
        try:
            return Aliases.model_validate_json(data)
        except ValidationError as exc:
            raise ManifestInvalid(key, _summarize(exc)) from exc


def _key(name: str, version: str, path: str) -> str:
    return f"models/{name}/{version}/{path}"


def _manifest_keys(keys: Sequence[str]) -> list[list[str]]:
    split = (key.split("/") for key in keys)
    return [parts for parts in split if len(parts) == 4 and parts[3] == MANIFEST]


def _build_manifest(
    manifest: Manifest | Mapping[str, Any], files: Mapping[str, tuple[str, bytes]]
) -> Manifest:
    fields = manifest.model_dump() if isinstance(manifest, Manifest) else dict(manifest)
    label = f"models/{fields.get('name')}/{fields.get('version')}/{MANIFEST}"
    for field_name in ("name", "version"):
        value = fields.get(field_name)
        if not isinstance(value, str) or not _NAME.fullmatch(value):
            raise ManifestInvalid(label, f"{field_name} {value!r} must match {_NAME.pattern}")
    if "model" not in files:
        raise ManifestInvalid(label, "no file with role 'model'")
    paths = [path for path, _ in files.values()]
    for role, (path, _) in files.items():
        if not _NAME.fullmatch(role) or not _NAME.fullmatch(path) or path in _RESERVED_FILES:
            raise ManifestInvalid(label, f"role {role!r} / file name {path!r} not allowed")
    if len(set(paths)) != len(paths):
        raise ManifestInvalid(label, "two roles share a file name")
    fields["files"] = {
        role: FileEntry(path=path, sha256=hashlib.sha256(content).hexdigest(), size=len(content))
        for role, (path, content) in files.items()
    }
    try:
        return Manifest.model_validate(fields)
    except ValidationError as exc:
        raise ManifestInvalid(label, _summarize(exc)) from exc


def _parse_manifest(data: bytes, *, name: str, version: str) -> Manifest:
    key = _key(name, version, MANIFEST)
    try:
        manifest = Manifest.model_validate_json(data)
    except ValidationError as exc:
        raise ManifestInvalid(key, _summarize(exc)) from exc
    if (manifest.name, manifest.version) != (name, version):
        raise ManifestInvalid(
            key, f"describes {manifest.name}@{manifest.version}, stored as {name}@{version}"
        )
    for entry in manifest.files.values():
        if not _NAME.fullmatch(entry.path) or entry.path in _RESERVED_FILES:
            raise ManifestInvalid(key, f"file path {entry.path!r} is not a plain file name")
    return manifest


def _encode(manifest: Manifest) -> bytes:
    return (manifest.model_dump_json(indent=2) + "\n").encode("utf-8")


def _comparable(manifest: Manifest) -> dict[str, Any]:
    return manifest.model_dump(mode="json", exclude={"created_at"})


def _summarize(exc: ValidationError) -> str:
    errors = exc.errors(include_url=False)
    shown = "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or '(root)'}: {e['msg']}" for e in errors[:5]
    )
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return shown + more
