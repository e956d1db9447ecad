"""Artifact store on S3 or an S3-compatible server, through boto3."""

from __future__ import annotations

import asyncio
import builtins
from collections.abc import Sequence
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.artifacts.keys import check_prefix, split_key
from storage.errors import ArtifactNotFound, StoreUnavailable

_BACKEND = "s3 artifact store"
_MISSING_CODES = frozenset({"NoSuchKey", "404", "NotFound"})
# S3 DeleteObjects takes at most 1000 keys per call.
DELETE_BATCH = 1000


class S3ArtifactStore:
    """Objects are S3 objects under `s3://<bucket>/<prefix>/`.

    A PUT replaces an object atomically, so writes need no temp object. boto3 calls are
    blocking and run in a worker thread; the client is thread-safe.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        *,
        endpoint_url: str | None,
        region: str | None = None,
        max_attempts: int = 4,
        connect_timeout: float = 5.0,
        read_timeout: float = 30.0,
    ) -> None:
        clean = prefix.strip("/")
        self.bucket = bucket
        self.prefix = f"{clean}/" if clean else ""
        self.uri = f"s3://{bucket}/{self.prefix}"
        # Standard retry mode backs off with jitter on throttling and transient 5xx;
        # a few attempts bound the wait an operator sees when the store is really down.
        config = Config(
            retries={"mode": "standard", "max_attempts": max_attempts},
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
        )
        # A private session: boto3's default session is shared mutable state.
        session = boto3.session.Session()
        self._client: Any = session.client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )

    async def read(self, key: str) -> bytes:
        """Return the object's bytes; raise `ArtifactNotFound` when absent."""
        split_key(key)
        return await asyncio.to_thread(self._read, key)

    async def write(self, key: str, data: bytes) -> None:
        """Write the object (a single PUT, atomic for readers)."""
        split_key(key)
        await asyncio.to_thread(self._write, key, bytes(data))

    async def exists(self, key: str) -> bool:
        """Tell whether the object exists."""
        split_key(key)
        return await asyncio.to_thread(self._exists, key)

    async def list(self, prefix: str) -> builtins.list[str]:
        """Return every key starting with `prefix`, sorted (all pages)."""
        check_prefix(prefix)
        return await asyncio.to_thread(self._list, prefix)

    async def delete(self, keys: Sequence[str]) -> int:
        """Delete the objects with DeleteObjects, 1000 keys per call."""
        for key in keys:
            split_key(key)
        await asyncio.to_thread(self._delete, list(keys))
        return len(keys)

    def _read(self, key: str) -> bytes:
        try:
            response = self._client.get_object(Bucket=self.bucket, Key=self.prefix + key)
            body: bytes = response["Body"].read()
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                raise ArtifactNotFound(key) from exc
            raise self._unavailable("reading", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("reading", key, exc) from exc
        return body

    def _write(self, key: str, data: bytes) -> None:
        try:
            self._client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data)
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("writing", key, exc) from exc

    def _delete(self, keys: builtins.list[str]) -> None:
        for start in range(0, len(keys), DELETE_BATCH):
            batch = keys[start:start + DELETE_BATCH]
            try:
                answer = self._client.delete_objects(Bucket=self.bucket, Delete={
                    "Objects": [{"Key": self.prefix + key} for key in batch], "Quiet": True})
            except (BotoCoreError, ClientError) as exc:
                raise self._unavailable("deleting", batch[0], exc) from exc
            # A 200 answer can still list keys it did not delete (AccessDenied, SlowDown...).
            errors = answer.get("Errors") or []
            if errors:
                first = errors[0]
                raise StoreUnavailable(_BACKEND, f"deleting s3://{self.bucket}/{first.get('Key')}"
                                       f" and {len(errors) - 1} more: {first.get('Code')} "
                                       f"{first.get('Message', '')}")

    def _exists(self, key: str) -> bool:
        try:
            self._client.head_object(Bucket=self.bucket, Key=self.prefix + key)
        except ClientError as exc:
            if _error_code(exc) in _MISSING_CODES:
                return False
            raise self._unavailable("checking", key, exc) from exc
        except BotoCoreError as exc:
            raise self._unavailable("checking", key, exc) from exc
        return True

    def _list(self, prefix: str) -> builtins.list[str]:
        keys: builtins.list[str] = []
        try:
            paginator = self._client.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                keys.extend(item["Key"][len(self.prefix):] for item in page.get("Contents", ()))
        except (BotoCoreError, ClientError) as exc:
            raise self._unavailable("listing", prefix, exc) from exc
        return sorted(keys)

    def _unavailable(self, action: str, key: str, exc: Exception) -> StoreUnavailable:
        return StoreUnavailable(_BACKEND, f"{action} s3://{self.bucket}/{self.prefix}{key}: {exc}")


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))
