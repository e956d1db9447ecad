"""ModelCatalog over a real S3-compatible server: publish, verified load, tamper refusal."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import boto3
import lightgbm
import numpy as np
import pandas as pd
import pytest

from storage.artifact_factory import open_artifact_store
from storage.catalog import ModelCatalog
from storage.errors import ArtifactDigestMismatch, SignatureInvalid, VersionExists
from storage.formats import parse_background, parse_lightgbm, serialize_background
from storage.signing import generate_signing_key

pytestmark = pytest.mark.integration

PREFIX = "whylens/artifacts"


def make_manifest(version: str = "1") -> dict[str, Any]:
    """A small valid manifest (without files) for a two-feature binary LightGBM model."""
    return {
        "name": "credit",
        "version": version,
        "flavor": "lightgbm",
        "task": "binary",
        "created_at": "2026-11-25T18:00:00Z",
        "training_data_snapshot": "s3://lake/credit/2026-11-01",
        "classes": [0, 1],
        "features": [{"name": "age"}, {"name": "debt_ratio", "min": 0.0, "max": 1.0}],
        "baseline": {
            "rows": 200,
            "features": {
                name: {"kind": "numeric", "edges": [0.0, 0.5, 1.0], "proportions": [0.5, 0.5],
                       "mean": 0.5, "std": 0.2, "min": 0.0, "max": 1.0, "missing_rate": 0.0}
                for name in ("age", "debt_ratio")
            },
            "score": {"edges": [0.0, 0.5, 1.0], "proportions": [0.6, 0.4]},
        },
        "files": {},
    }


@pytest.fixture
def bucket(s3_endpoint: str) -> Iterator[tuple[Any, str]]:
    client = boto3.session.Session().client("s3", endpoint_url=s3_endpoint)
    name = f"wltest-{uuid.uuid4().hex[:16]}"
    client.create_bucket(Bucket=name)
    yield client, name
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        objects = [{"Key": item["Key"]} for item in page.get("Contents", ())]
        if objects:
            client.delete_objects(Bucket=name, Delete={"Objects": objects, "Quiet": True})
    client.delete_bucket(Bucket=name)


@pytest.fixture(scope="module")
def version_files() -> tuple[dict[str, tuple[str, bytes]], lightgbm.Booster, np.ndarray]:
    rng = np.random.default_rng(11)
    X = np.column_stack([rng.uniform(18, 90, 200), rng.uniform(0, 1, 200)])
    y = (X[:, 1] > 0.5).astype(int)
    booster = lightgbm.train({"objective": "binary", "verbose": -1, "seed": 11},
                             lightgbm.Dataset(X, y), num_boost_round=8)
    background = serialize_background(pd.DataFrame(X[:20], columns=["age", "debt_ratio"]))
    files = {"model": ("model.txt", booster.model_to_string().encode("utf-8")),
             "background": ("background.parquet", background)}
    return files, booster, X


def _catalog(endpoint: str, bucket: str, trusted: list[bytes] | None = None) -> ModelCatalog:
    store = open_artifact_store(f"s3://{bucket}/{PREFIX}", s3_endpoint_url=endpoint)
    return ModelCatalog(store, trusted_public_keys=trusted or ())


def _flip_object_byte(client: Any, bucket: str, key: str) -> None:
    data = bytearray(client.get_object(Bucket=bucket, Key=key)["Body"].read())
    data[len(data) // 2] ^= 0x01
    client.put_object(Bucket=bucket, Key=key, Body=bytes(data))


async def test_publish_then_load_through_s3_predicts_like_the_original(
    s3_endpoint: str, bucket: tuple[Any, str], version_files: Any
) -> None:
    client, name = bucket
    files, booster, X = version_files
    catalog = _catalog(s3_endpoint, name)

    await catalog.publish(make_manifest(), files)
    await catalog.set_alias("credit", "production", "1")
    loaded = await catalog.load("credit", await catalog.resolve("credit", "production"))

    np.testing.assert_array_equal(parse_lightgbm(loaded.files["model"]).predict(X),
                                  booster.predict(X))
    assert len(parse_background(loaded.files["background"])) == 20
    assert await catalog.list_models() == ["credit"]
    listed = client.list_objects_v2(Bucket=name, Prefix=f"{PREFIX}/models/credit/")
    assert {item["Key"].rsplit("/", 1)[-1] for item in listed["Contents"]} == {
        "manifest.json", "model.txt", "background.parquet", "aliases.json",
    }


@pytest.mark.parametrize("filename", ["model.txt", "background.parquet"])
async def test_tampered_object_in_s3_is_refused_naming_the_file(
    s3_endpoint: str, bucket: tuple[Any, str], version_files: Any, filename: str
) -> None:
    client, name = bucket
    catalog = _catalog(s3_endpoint, name)
    await catalog.publish(make_manifest(), version_files[0])

    _flip_object_byte(client, name, f"{PREFIX}/models/credit/1/{filename}")

    with pytest.raises(ArtifactDigestMismatch, match=f"models/credit/1/{filename}"):
        await catalog.load("credit", "1")


async def test_signed_version_in_s3_is_verified_and_a_manifest_edit_refused(
    s3_endpoint: str, bucket: tuple[Any, str], version_files: Any
) -> None:
    client, name = bucket
    keys = generate_signing_key()
    await _catalog(s3_endpoint, name).publish(make_manifest(), version_files[0],
                                              signing_key_pem=keys.private_pem)
    trusting = _catalog(s3_endpoint, name, trusted=[keys.public_pem])
    assert (await trusting.load("credit", "1")).manifest.version == "1"

    _flip_object_byte(client, name, f"{PREFIX}/models/credit/1/manifest.json")

    with pytest.raises(SignatureInvalid, match=r"models/credit/1/manifest\.json"):
        await trusting.load("credit", "1")


async def test_published_version_in_s3_cannot_be_overwritten(
    s3_endpoint: str, bucket: tuple[Any, str], version_files: Any
) -> None:
    _, name = bucket
    catalog = _catalog(s3_endpoint, name)
    files = dict(version_files[0])
    await catalog.publish(make_manifest(), files)
    files["model"] = ("model.txt", b"tree\ndifferent\n")

    with pytest.raises(VersionExists):
        await catalog.publish(make_manifest(), files)
