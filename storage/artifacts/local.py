"""Artifact store on a local directory (embedded mode, tests, a mounted volume)."""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from storage.artifacts.keys import check_prefix, split_key
from storage.errors import ArtifactKeyInvalid, ArtifactNotFound, StoreUnavailable

_TMP_SUFFIX = ".wltmp"
_BACKEND = "local artifact store"


class LocalArtifactStore:
    """Objects are files under `root`; writes go to a temp file then `os.replace`.

    Readers therefore see the old or the new bytes, never a partial file. Temp files
    (`.<name>.<random>.wltmp`, left behind only by a crash) are never listed.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(os.path.abspath(root))
        self.uri = self.root.as_uri()

    async def read(self, key: str) -> bytes:
        """Return the object's bytes; raise `ArtifactNotFound` when absent."""
        path = self._path(key)
        return await asyncio.to_thread(self._read, key, path)

    async def write(self, key: str, data: bytes) -> None:
        """Write the object atomically (temp file in the same folder, fsync, rename)."""
        path = self._path(key)
        await asyncio.to_thread(self._write, key, path, bytes(data))

    async def exists(self, key: str) -> bool:
        """Tell whether the object exists (a folder is not an object)."""
        path = self._path(key)
        return await asyncio.to_thread(path.is_file)

    async def list(self, prefix: str) -> builtins.list[str]:
        """Return every key starting with `prefix` (string prefix, as in S3), sorted."""
        check_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    async def delete(self, keys: Sequence[str]) -> int:
        """Remove the files, then every folder the removals left empty (up to the root)."""
        paths = [self._path(key) for key in keys]
        await asyncio.to_thread(self._delete, paths)
        return len(paths)

    def _path(self, key: str) -> Path:
        parts = split_key(key)
        if parts[-1].startswith(".") and parts[-1].endswith(_TMP_SUFFIX):
            raise ArtifactKeyInvalid(key, f"names ending in {_TMP_SUFFIX} are reserved")
        return self.root.joinpath(*parts)

    @staticmethod
    def _read(key: str, path: Path) -> bytes:
        try:
            return path.read_bytes()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ArtifactNotFound(key) from exc
        except OSError as exc:
            raise StoreUnavailable(_BACKEND, f"reading {key}: {exc}") from exc

    def _write(self, key: str, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}{_TMP_SUFFIX}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.is_dir():
                raise ArtifactKeyInvalid(key, "a folder of other objects already has this name")
            # O_EXCL: the random name is ours alone; 0o666 lets the umask decide, as open() would.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
            try:
                with os.fdopen(fd, "wb") as handle:
                    handle.write(data)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            _fsync_dir(path.parent)
        except (FileExistsError, NotADirectoryError) as exc:
            if not self.root.is_dir():
                raise StoreUnavailable(_BACKEND, f"root {self.root} is not a folder") from exc
            reason = "an object already exists where a folder is needed"
            raise ArtifactKeyInvalid(key, reason) from exc
        except OSError as exc:
            raise StoreUnavailable(_BACKEND, f"writing {key}: {exc}") from exc

    def _delete(self, paths: builtins.list[Path]) -> None:
        folders: set[Path] = set()
        try:
            for path in paths:
                path.unlink(missing_ok=True)
                folders.update(p for p in path.parents if p != self.root and
                               p.is_relative_to(self.root))
            # Deepest first, so a parent is tried only after its children.
            for folder in sorted(folders, key=lambda p: len(p.parts), reverse=True):
                with contextlib.suppress(OSError):
                    folder.rmdir()
        except (IsADirectoryError, NotADirectoryError) as exc:
            raise ArtifactKeyInvalid(str(exc.filename), "a folder, not an object") from exc
        except OSError as exc:
            raise StoreUnavailable(_BACKEND, f"deleting: {exc}") from exc

    def _list(self, prefix: str) -> builtins.list[str]:
        folder = prefix.rpartition("/")[0]
        top = self.root.joinpath(*folder.split("/")) if folder else self.root
        keys: builtins.list[str] = []
        try:
            if not top.is_dir():
                return []
            for dirpath, _dirnames, filenames in os.walk(top, onerror=_raise):
                rel = Path(dirpath).relative_to(self.root).as_posix()
                base = "" if rel == "." else f"{rel}/"
                for name in filenames:
                    if name.startswith(".") and name.endswith(_TMP_SUFFIX):
                        continue
                    key = base + name
                    if key.startswith(prefix):
                        keys.append(key)
        except OSError as exc:
            raise StoreUnavailable(_BACKEND, f"listing {prefix!r}: {exc}") from exc
        return sorted(keys)


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable: without it a crash can forget the new entry.
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _raise(exc: OSError) -> None:
    raise exc
