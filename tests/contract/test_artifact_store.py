"""The ArtifactStore contract, run against every implementation (local folder, S3)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import boto3
import pytest

import storage.artifacts
from storage.artifact_factory import open_artifact_store
from storage.artifacts.local import LocalArtifactStore
from storage.artifacts.s3 import S3ArtifactStore
from storage.errors import (
    ArtifactKeyInvalid,
    ArtifactNotFound,
    StoreUnavailable,
    UnsupportedStoreUrl,
)
from storage.protocols import ArtifactStore


def _s3_client(endpoint: str) -> Any:
    return boto3.session.Session().client("s3", endpoint_url=endpoint)


def _empty_and_delete_bucket(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if objects:
            client.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})
    client.delete_bucket(Bucket=bucket)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ArtifactStore]:
    if request.param == "local":
        yield LocalArtifactStore(tmp_path / "artifacts")
        return
    endpoint: str = request.getfixturevalue("s3_endpoint")
    client = _s3_client(endpoint)
    bucket = f"wltest-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=bucket)
    try:
        yield S3ArtifactStore(bucket, "whylens/artifacts", endpoint_url=endpoint)
    finally:
        _empty_and_delete_bucket(client, bucket)


async def test_written_object_reads_back_and_exists(store: ArtifactStore) -> None:
    await store.write("models/credit/1/model.txt", b"tree\n")

    assert await store.read("models/credit/1/model.txt") == b"tree\n"
    assert await store.exists("models/credit/1/model.txt")


async def test_binary_data_round_trips_byte_for_byte(store: ArtifactStore) -> None:
    data = bytes(range(256)) * 64 + b"\x00\r\n\x1a"

    await store.write("blob.bin", data)

    assert await store.read("blob.bin") == data


async def test_empty_object_round_trips(store: ArtifactStore) -> None:
    await store.write("empty", b"")

    assert await store.read("empty") == b""
    assert await store.exists("empty")


async def test_missing_key_raises_artifact_not_found(store: ArtifactStore) -> None:
    with pytest.raises(ArtifactNotFound) as caught:
        await store.read("models/nope/1/manifest.json")

    assert caught.value.key == "models/nope/1/manifest.json"
    assert not await store.exists("models/nope/1/manifest.json")


async def test_a_folder_is_not_an_object(store: ArtifactStore) -> None:
    await store.write("models/credit/1/model.txt", b"x")

    assert not await store.exists("models/credit")
    with pytest.raises(ArtifactNotFound):
        await store.read("models/credit/1")


async def test_overwrite_replaces_the_whole_object(store: ArtifactStore) -> None:
    await store.write("models/credit/aliases.json", b"a much longer first version" * 100)
    await store.write("models/credit/aliases.json", b"short")

    assert await store.read("models/credit/aliases.json") == b"short"
    assert await store.list("models/") == ["models/credit/aliases.json"]


async def test_concurrent_overwrites_are_never_seen_half_written(store: ArtifactStore) -> None:
    first, second = b"A" * 300_000, b"B" * 200_000
    await store.write("models/credit/aliases.json", first)

    async def write_many() -> None:
        for i in range(6):
            await store.write("models/credit/aliases.json", first if i % 2 else second)

    async def read_many() -> list[bytes]:
        return [await store.read("models/credit/aliases.json") for _ in range(12)]

    results = await asyncio.gather(write_many(), read_many(), read_many())

    seen = [data for batch in results[1:] if batch for data in batch]
    assert seen
    assert all(data in (first, second) for data in seen)
    assert await store.list("") == ["models/credit/aliases.json"]  # no temp objects left


async def test_list_returns_sorted_keys_under_nested_prefixes(store: ArtifactStore) -> None:
    keys = [
        "models/credit/10/manifest.json",
        "models/credit/2/manifest.json",
        "models/credit/2/model.txt",
        "models/credit/aliases.json",
        "models/credit-v2/1/manifest.json",
        "models/fraud/1/manifest.json",
        "other.txt",
    ]
    for key in reversed(keys):
        await store.write(key, key.encode())

    assert await store.list("") == sorted(keys)
    assert await store.list("models/") == sorted(keys[:-1])
    assert await store.list("models/credit/") == sorted(keys[:4])
    assert await store.list("models/credit") == sorted(keys[:5])
    assert await store.list("models/credit/2/") == keys[1:3]
    assert await store.list("models/unknown/") == []


async def test_list_and_delete_page_through_many_objects(store: ArtifactStore) -> None:
    keys = [f"many/{i:04d}" for i in range(1005)]  # more than one S3 page of 1000
    for start in range(0, len(keys), 100):
        await asyncio.gather(*(store.write(key, b"") for key in keys[start:start + 100]))

    assert await store.list("many/") == keys
    assert await store.delete(keys[:1003]) == 1003  # more than one DeleteObjects call
    assert await store.list("many/") == keys[1003:]


async def test_delete_removes_only_the_named_objects(store: ArtifactStore) -> None:
    kept = ["archive/dt=2026-01-02/a.gz", "archive/dt=2026-01-01x/b.gz"]
    gone = ["archive/dt=2026-01-01/m=a/a.gz", "archive/dt=2026-01-01/m=b/b.gz"]
    for key in kept + gone:
        await store.write(key, b"x")

    assert await store.delete([*gone, "archive/dt=2026-01-01/never-written.gz"]) == 3

    assert await store.list("archive/") == sorted(kept)
    for key in gone:
        assert not await store.exists(key)
        with pytest.raises(ArtifactNotFound):
            await store.read(key)
    assert await store.delete([]) == 0


@pytest.mark.parametrize("key", ["", "/etc/passwd", "../outside", "models/../../x", "a/"])
async def test_delete_refuses_keys_that_could_escape_the_root(store: ArtifactStore,
                                                              key: str) -> None:
    await store.write("models/keep", b"x")
    with pytest.raises(ArtifactKeyInvalid):
        await store.delete(["models/keep", key])
    assert await store.exists("models/keep")


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../outside", "models/../../outside", "models//x", "models/./x",
     "models/x/", "back\\slash", "nul\x00byte"],
)
async def test_keys_that_could_escape_the_root_are_refused(store: ArtifactStore, key: str) -> None:
    with pytest.raises(ArtifactKeyInvalid):
        await store.write(key, b"x")
    with pytest.raises(ArtifactKeyInvalid):
        await store.read(key)
    with pytest.raises(ArtifactKeyInvalid):
        await store.exists(key)


@pytest.mark.parametrize("prefix", ["/", "../", "models/../", "a//"])
async def test_prefixes_that_could_escape_the_root_are_refused(
    store: ArtifactStore, prefix: str
) -> None:
    with pytest.raises(ArtifactKeyInvalid):
        await store.list(prefix)


# --- backend specifics -------------------------------------------------------------------

async def test_local_store_leaves_nothing_outside_its_root(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "root")
    await store.write("a/b/c.bin", b"x")

    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "root", "root/a", "root/a/b", "root/a/b/c.bin",
    ]
    assert store.uri == (tmp_path / "root").as_uri()


async def test_local_store_delete_removes_folders_left_empty_and_keeps_the_root(
        tmp_path: Path) -> None:
    root = tmp_path / "archive"
    store = LocalArtifactStore(root)
    await store.write("traces/dt=2026-01-01/model=a/b1.gz", b"x")
    await store.write("traces/dt=2026-01-01/model=b/b2.gz", b"x")
    await store.write("traces/dt=2026-01-02/model=a/b3.gz", b"x")

    await store.delete(["traces/dt=2026-01-01/model=a/b1.gz"])
    assert not (root / "traces/dt=2026-01-01/model=a").exists()
    assert (root / "traces/dt=2026-01-01/model=b/b2.gz").is_file()

    await store.delete(["traces/dt=2026-01-01/model=b/b2.gz"])
    assert sorted(p.name for p in (root / "traces").iterdir()) == ["dt=2026-01-02"]
    await store.delete(["traces/dt=2026-01-02/model=a/b3.gz"])
    assert root.is_dir() and list(root.iterdir()) == []


async def test_local_store_does_not_list_leftover_temp_files(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    await store.write("models/x", b"1")
    (tmp_path / "models" / ".x.0123abcd.wltmp").write_bytes(b"crash leftover")

    assert await store.list("") == ["models/x"]


async def test_local_store_on_an_unusable_root_is_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    store = LocalArtifactStore(blocker / "root")

    with pytest.raises(StoreUnavailable, match="not a folder"):
        await store.write("a", b"x")


async def test_local_store_refuses_an_object_where_a_folder_is_needed(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path)
    await store.write("models/credit", b"x")

    with pytest.raises(ArtifactKeyInvalid):
        await store.write("models/credit/1/manifest.json", b"y")
    with pytest.raises(ArtifactKeyInvalid):
        await store.write("models", b"z")
    assert await store.read("models/credit") == b"x"


@pytest.mark.integration
async def test_s3_store_with_missing_bucket_is_unavailable(s3_endpoint: str) -> None:
    store = S3ArtifactStore(f"wltest-missing-{uuid.uuid4().hex[:8]}", "",
                            endpoint_url=s3_endpoint, max_attempts=1)

    with pytest.raises(StoreUnavailable, match="NoSuchBucket"):
        await store.read("anything")
    with pytest.raises(StoreUnavailable):
        await store.list("")


async def test_s3_store_without_a_server_is_unavailable() -> None:
    store = S3ArtifactStore("bucket", "p", endpoint_url="http://127.0.0.1:9",
                            max_attempts=1, connect_timeout=1.0)

    with pytest.raises(StoreUnavailable, match="s3://bucket/p/key"):
        await store.read("key")
    with pytest.raises(StoreUnavailable):
        await store.write("key", b"x")
    with pytest.raises(StoreUnavailable):
        await store.exists("key")


def test_s3_store_constructor_does_no_network_io() -> None:
    store = S3ArtifactStore("bucket", "/a/b/", endpoint_url="http://127.0.0.1:9")

    assert store.uri == "s3://bucket/a/b/"


def test_artifacts_package_exports_exactly_the_store_classes() -> None:
    assert sorted(storage.artifacts.__all__) == ["LocalArtifactStore", "S3ArtifactStore"]
    assert storage.artifacts.LocalArtifactStore is LocalArtifactStore


# --- factory -----------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("file:///var/lib/whylens/artifacts", "/var/lib/whylens/artifacts"),
        ("file://localhost/var/lib/whylens", "/var/lib/whylens"),
        ("file:///srv/my%20models", "/srv/my models"),
        ("/srv/artifacts", "/srv/artifacts"),
    ],
)
def test_factory_opens_local_store_for_absolute_paths(uri: str, expected: str) -> None:
    store = open_artifact_store(uri)

    assert isinstance(store, LocalArtifactStore)
    assert store.root == Path(expected)


@pytest.mark.parametrize("uri", ["file://artifacts/dev", "artifacts/dev", "./artifacts/dev"])
def test_factory_resolves_relative_paths_against_the_working_directory(
    uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    store = open_artifact_store(uri)

    assert isinstance(store, LocalArtifactStore)
    assert store.root == tmp_path / "artifacts" / "dev"


@pytest.mark.parametrize(
    ("uri", "uri_after"),
    [("s3://models-bucket/prod/whylens", "s3://models-bucket/prod/whylens/"),
     ("s3://models-bucket", "s3://models-bucket/")],
)
def test_factory_opens_s3_store(uri: str, uri_after: str) -> None:
    store = open_artifact_store(uri, s3_endpoint_url="http://127.0.0.1:9")

    assert isinstance(store, S3ArtifactStore)
    assert store.uri == uri_after


@pytest.mark.parametrize(
    "uri",
    ["", "redis://localhost:6379/0", "gs://bucket/x", "s3://", "s3://Bad_Bucket/x",
     "file:///x?y=1", "s3://bucket/p#frag"],
)
def test_factory_refuses_unknown_or_malformed_urls(uri: str) -> None:
    with pytest.raises(UnsupportedStoreUrl):
        open_artifact_store(uri)
