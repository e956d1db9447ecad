"""ModelCatalog on a local folder: publish, verified load, signatures, aliases, listings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pytest

from storage.artifacts.local import LocalArtifactStore
from storage.catalog import LoadedVersion, ModelCatalog, version_sort_key
from storage.errors import (
    AliasInvalid,
    ArtifactDigestMismatch,
    ArtifactNotFound,
    ManifestInvalid,
    ModelNotFound,
    SignatureInvalid,
    SigningKeyInvalid,
    VersionExists,
    VersionNotFound,
)
from storage.formats import parse_background, parse_lightgbm, serialize_background
from storage.manifest import Manifest
from storage.signing import (
    generate_signing_key,
    key_fingerprint,
    sign_manifest,
    verify_manifest,
)

MODEL_BYTES = b"tree\nversion=v4\n(not parsed by the catalog)\n"


def make_manifest(name: str = "credit", version: str = "1", **overrides: Any) -> dict[str, Any]:
    """A small valid manifest (without files) for a two-feature binary model."""
    fields: dict[str, Any] = {
        "name": name,
        "version": version,
        "flavor": "lightgbm",
        "task": "binary",
        "created_at": "2026-11-25T18:00:00Z",
        "owner": "risk-team",
        "training_data_snapshot": "s3://lake/credit/2026-11-01",
        "classes": [0, 1],
        "features": [
            {"name": "age", "type": "numeric", "min": 18, "max": 99},
            {"name": "zip_code", "type": "categorical", "mask": "hash",
             "categories": ["94110", "75001"]},
        ],
        "baseline": {
            "rows": 400,
            "features": {
                "age": {"kind": "numeric", "edges": [18.0, 35.0, 99.0],
                        "proportions": [0.5, 0.5], "mean": 40.0, "std": 11.0,
                        "min": 18.0, "max": 99.0, "missing_rate": 0.0},
                "zip_code": {"kind": "categorical", "frequencies": {"94110": 0.6,
                                                                   "75001": 0.4},
                             "missing_rate": 0.0},
            },
            "score": {"edges": [0.0, 0.5, 1.0], "proportions": [0.7, 0.3]},
        },
        "files": {},
    }
    fields.update(overrides)
    return fields


@pytest.fixture(scope="session")
def background_bytes() -> bytes:
    frame = pd.DataFrame({"age": [41.0, 23.0, 67.0], "zip_code": ["94110", "75001", "94110"]})
    return serialize_background(frame)


def model_files(background: bytes, model: bytes = MODEL_BYTES) -> dict[str, tuple[str, bytes]]:
    return {"model": ("model.txt", model), "background": ("background.parquet", background)}


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


@pytest.fixture
def catalog(store: LocalArtifactStore) -> ModelCatalog:
    return ModelCatalog(store)


@pytest.fixture(scope="session")
def keys() -> tuple[bytes, bytes]:
    return generate_signing_key()


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0x01
    path.write_bytes(bytes(data))


def _version_dir(store: LocalArtifactStore, name: str = "credit", version: str = "1") -> Path:
    return store.root / "models" / name / version


# --- publish and load ------------------------------------------------------------------

async def test_publish_then_load_returns_verified_files_and_digests(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    published = await catalog.publish(make_manifest(), model_files(background_bytes))

    loaded = await catalog.load("credit", "1")

    assert isinstance(loaded, LoadedVersion)
    assert loaded.manifest == published
    assert loaded.files == {"model": MODEL_BYTES, "background": background_bytes}
    assert loaded.manifest.files["model"].path == "model.txt"
    assert loaded.manifest.files["model"].size == len(MODEL_BYTES)
    assert len(loaded.manifest_sha256) == 64
    assert "files" not in repr(loaded).split("manifest_sha256")[1]


async def test_publish_accepts_a_manifest_model_and_recomputes_files(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    stale = Manifest.model_validate(
        make_manifest(files={"model": {"path": "old.txt", "sha256": "0" * 64, "size": 1}})
    )

    published = await catalog.publish(stale, model_files(background_bytes))

    assert set(published.files) == {"model", "background"}
    assert published.files["model"].path == "model.txt"


async def test_real_lightgbm_version_round_trips_through_the_catalog(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(200, 2))
    y = (X[:, 0] > 0).astype(int)
    booster = lightgbm.train({"objective": "binary", "verbose": -1, "seed": 3},
                             lightgbm.Dataset(X, y), num_boost_round=5)
    files = model_files(background_bytes, booster.model_to_string().encode("utf-8"))
    await catalog.publish(make_manifest(), files)

    loaded = await catalog.load("credit", "1")

    restored = parse_lightgbm(loaded.files["model"])
    np.testing.assert_array_equal(restored.predict(X), booster.predict(X))
    assert list(parse_background(loaded.files["background"]).columns) == ["age", "zip_code"]


async def test_load_of_unknown_version_raises_version_not_found(catalog: ModelCatalog) -> None:
    with pytest.raises(VersionNotFound):
        await catalog.load("credit", "404")


@pytest.mark.parametrize(("name", "version"), [("../etc", "1"), ("credit", ".."),
                                               ("credit", "a/b"), ("", "1")])
async def test_load_with_path_like_names_is_not_found(
    catalog: ModelCatalog, name: str, version: str
) -> None:
    with pytest.raises(VersionNotFound):
        await catalog.load(name, version)


async def test_publish_refuses_unsafe_names_and_reserved_files(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    with pytest.raises(ManifestInvalid, match="name"):
        await catalog.publish(make_manifest(name="a/b"), model_files(background_bytes))
    with pytest.raises(ManifestInvalid, match="model"):
        await catalog.publish(make_manifest(), {"background": ("b.parquet", background_bytes)})
    with pytest.raises(ManifestInvalid, match=r"manifest\.json"):
        await catalog.publish(make_manifest(), {"model": ("manifest.json", MODEL_BYTES)})
    with pytest.raises(ManifestInvalid, match="share"):
        await catalog.publish(make_manifest(), {"model": ("m.txt", MODEL_BYTES),
                                                "background": ("m.txt", background_bytes)})


async def test_publish_refuses_a_manifest_that_fails_validation(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    with pytest.raises(ManifestInvalid, match="flavor"):
        await catalog.publish(make_manifest(flavor="xgboost"), model_files(background_bytes))


# --- tampering -------------------------------------------------------------------------

@pytest.mark.parametrize("filename", ["model.txt", "background.parquet"])
@pytest.mark.parametrize("offset", [0, -1])
async def test_flipped_byte_in_a_file_is_refused_naming_the_file(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes,
    filename: str, offset: int,
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    path = _version_dir(store) / filename
    _flip_byte(path, offset if offset >= 0 else path.stat().st_size - 1)

    with pytest.raises(ArtifactDigestMismatch) as caught:
        await catalog.load("credit", "1")

    assert caught.value.key == f"models/credit/1/{filename}"
    assert f"models/credit/1/{filename}" in str(caught.value)


async def test_truncated_file_is_refused(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    (_version_dir(store) / "model.txt").write_bytes(MODEL_BYTES[:-3])

    with pytest.raises(ArtifactDigestMismatch, match=r"model\.txt"):
        await catalog.load("credit", "1")


async def test_missing_file_is_reported_with_its_key(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    (_version_dir(store) / "background.parquet").unlink()

    with pytest.raises(ArtifactNotFound, match=r"models/credit/1/background\.parquet"):
        await catalog.load("credit", "1")


async def test_manifest_digest_edit_is_refused_naming_the_file(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    published = await catalog.publish(make_manifest(), model_files(background_bytes))
    path = _version_dir(store) / "manifest.json"
    text = path.read_bytes()
    digest = published.files["model"].sha256.encode()
    edited = digest[:-1] + (b"0" if digest[-1:] != b"0" else b"1")
    path.write_bytes(text.replace(digest, edited))

    with pytest.raises(ArtifactDigestMismatch, match=r"models/credit/1/model\.txt"):
        await catalog.load("credit", "1")


async def test_manifest_byte_flip_breaking_json_is_refused_naming_the_manifest(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    _flip_byte(_version_dir(store) / "manifest.json", 0)  # '{' becomes 'z'

    with pytest.raises(ManifestInvalid, match=r"models/credit/1/manifest\.json"):
        await catalog.load("credit", "1")


async def test_manifest_missing_a_field_is_refused_with_the_reason(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    path = _version_dir(store) / "manifest.json"
    document = json.loads(path.read_bytes())
    del document["task"]
    path.write_text(json.dumps(document))

    with pytest.raises(ManifestInvalid) as caught:
        await catalog.load("credit", "1")

    assert "task" in caught.value.reason
    assert caught.value.key == "models/credit/1/manifest.json"


async def test_manifest_copied_to_another_version_is_refused(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    target = _version_dir(store, version="2")
    target.mkdir(parents=True)
    for item in _version_dir(store).iterdir():
        (target / item.name).write_bytes(item.read_bytes())

    with pytest.raises(ManifestInvalid, match="credit@1"):
        await catalog.load("credit", "2")


# --- signatures ------------------------------------------------------------------------

async def test_signed_version_loads_when_its_key_is_trusted(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes]
) -> None:
    private_pem, public_pem = keys
    await ModelCatalog(store).publish(make_manifest(), model_files(background_bytes),
                                      signing_key_pem=private_pem)
    trusting = ModelCatalog(store, trusted_public_keys=[public_pem])

    loaded = await trusting.load("credit", "1")

    assert trusting.signature_required
    assert loaded.files["model"] == MODEL_BYTES
    sig = json.loads((_version_dir(store) / "manifest.sig").read_bytes())
    assert sig["key_id"] == key_fingerprint(public_pem)


async def test_unsigned_version_is_refused_when_keys_are_trusted(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes]
) -> None:
    await ModelCatalog(store).publish(make_manifest(), model_files(background_bytes))
    trusting = ModelCatalog(store, trusted_public_keys=[keys[1]])

    with pytest.raises(SignatureInvalid, match=r"models/credit/1/manifest\.json.*unsigned"):
        await trusting.load("credit", "1")


async def test_version_signed_by_an_untrusted_key_is_refused(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes]
) -> None:
    other_private, _ = generate_signing_key()
    await ModelCatalog(store).publish(make_manifest(), model_files(background_bytes),
                                      signing_key_pem=other_private)
    trusting = ModelCatalog(store, trusted_public_keys=[keys[1]])

    with pytest.raises(SignatureInvalid, match="not a trusted key"):
        await trusting.load("credit", "1")


async def test_signature_swapped_for_another_keys_with_forged_key_id_is_refused(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes]
) -> None:
    other_private, _ = generate_signing_key()
    await ModelCatalog(store).publish(make_manifest(), model_files(background_bytes),
                                      signing_key_pem=other_private)
    sig_path = _version_dir(store) / "manifest.sig"
    document = json.loads(sig_path.read_bytes())
    document["key_id"] = key_fingerprint(keys[1])
    sig_path.write_text(json.dumps(document))
    trusting = ModelCatalog(store, trusted_public_keys=[keys[1]])

    with pytest.raises(SignatureInvalid, match="does not match"):
        await trusting.load("credit", "1")


async def test_any_manifest_byte_flip_is_refused_when_signed(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes]
) -> None:
    private_pem, public_pem = keys
    await ModelCatalog(store).publish(make_manifest(), model_files(background_bytes),
                                      signing_key_pem=private_pem)
    path = _version_dir(store) / "manifest.json"
    original = path.read_bytes()
    trusting = ModelCatalog(store, trusted_public_keys=[public_pem])

    for offset in range(0, len(original), 41):
        _flip_byte(path, offset)
        with pytest.raises(SignatureInvalid, match=r"manifest\.json"):
            await trusting.load("credit", "1")
        path.write_bytes(original)
    assert (await trusting.load("credit", "1")).manifest.name == "credit"


@pytest.mark.parametrize("content", [b"", b"garbage", b'{"format": "other"}',
                                     b'{"format": "whylens-manifest-sig/1", "algorithm": '
                                     b'"ed25519", "key_id": "x", "signature": "!!"}'])
async def test_malformed_signature_file_is_refused(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes],
    content: bytes,
) -> None:
    await ModelCatalog(store).publish(make_manifest(), model_files(background_bytes),
                                      signing_key_pem=keys[0])
    (_version_dir(store) / "manifest.sig").write_bytes(content)

    with pytest.raises(SignatureInvalid):
        await ModelCatalog(store, trusted_public_keys=[keys[1]]).load("credit", "1")


def test_sign_and_verify_manifest_bytes_directly(keys: tuple[bytes, bytes]) -> None:
    private_pem, public_pem = keys
    other_public = generate_signing_key().public_pem
    signature = sign_manifest(b'{"name": "credit"}', private_pem)

    assert verify_manifest(b'{"name": "credit"}', signature, [other_public, public_pem]) == (
        key_fingerprint(public_pem)
    )
    with pytest.raises(SignatureInvalid):
        verify_manifest(b'{"name": "credit!"}', signature, [public_pem])
    with pytest.raises(SignatureInvalid, match="no trusted"):
        verify_manifest(b'{"name": "credit"}', signature, [])


def test_invalid_keys_are_refused_without_echoing_them(keys: tuple[bytes, bytes]) -> None:
    with pytest.raises(SigningKeyInvalid):
        sign_manifest(b"{}", keys[1])  # a public key is not a private key
    with pytest.raises(SigningKeyInvalid):
        ModelCatalog(LocalArtifactStore(Path("unused")), trusted_public_keys=[b"not a key"])
    with pytest.raises(SigningKeyInvalid) as caught:
        ModelCatalog(LocalArtifactStore(Path("unused")), trusted_public_keys=[keys[0]])
    assert keys[0].decode() not in str(caught.value)


# --- immutability ----------------------------------------------------------------------

async def test_republishing_different_content_raises_version_exists(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))

    with pytest.raises(VersionExists, match="credit@1"):
        await catalog.publish(make_manifest(), model_files(background_bytes, b"tree\nother\n"))
    with pytest.raises(VersionExists):
        await catalog.publish(make_manifest(owner="someone-else"), model_files(background_bytes))
    assert (await catalog.load("credit", "1")).files["model"] == MODEL_BYTES


async def test_republishing_identical_content_is_idempotent_and_keeps_created_at(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes,
    keys: tuple[bytes, bytes],
) -> None:
    first = await catalog.publish(make_manifest(), model_files(background_bytes))

    again = await catalog.publish(make_manifest(created_at="2026-12-01T00:00:00Z"),
                                  model_files(background_bytes), signing_key_pem=keys[0])

    assert again == first
    assert (_version_dir(store) / "manifest.sig").exists()
    trusting = ModelCatalog(store, trusted_public_keys=[keys[1]])
    assert (await trusting.load("credit", "1")).manifest.created_at == first.created_at


class _RecordingStore:
    """An ArtifactStore fake that records writes and can fail on a chosen key."""

    def __init__(self, inner: LocalArtifactStore, fail_on: str | None = None) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.writes: list[str] = []
        self.fail_on = fail_on

    async def read(self, key: str) -> bytes:
        return await self.inner.read(key)

    async def write(self, key: str, data: bytes) -> None:
        if self.fail_on is not None and key.endswith(self.fail_on):
            raise OSError("disk full")
        self.writes.append(key)
        await self.inner.write(key, data)

    async def exists(self, key: str) -> bool:
        return await self.inner.exists(key)

    async def list(self, prefix: str) -> list[str]:
        return await self.inner.list(prefix)


async def test_publish_writes_files_then_signature_then_manifest_last(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes]
) -> None:
    recording = _RecordingStore(store)

    await ModelCatalog(recording).publish(make_manifest(), model_files(background_bytes),
                                          signing_key_pem=keys[0])

    assert recording.writes[-2:] == ["models/credit/1/manifest.sig",
                                     "models/credit/1/manifest.json"]
    assert set(recording.writes[:-2]) == {"models/credit/1/model.txt",
                                          "models/credit/1/background.parquet"}


async def test_publish_interrupted_before_the_manifest_leaves_no_visible_version(
    store: LocalArtifactStore, background_bytes: bytes
) -> None:
    failing = ModelCatalog(_RecordingStore(store, fail_on="manifest.json"))

    with pytest.raises(OSError, match="disk full"):
        await failing.publish(make_manifest(), model_files(background_bytes))

    catalog = ModelCatalog(store)
    assert await catalog.list_models() == []
    with pytest.raises(VersionNotFound):
        await catalog.load("credit", "1")
    await catalog.publish(make_manifest(), model_files(background_bytes))  # a retry succeeds


# --- aliases and listings --------------------------------------------------------------

async def test_aliases_resolve_and_report_previous_target(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    for version in ("1", "2"):
        await catalog.publish(make_manifest(version=version), model_files(background_bytes))
    assert await catalog.aliases("credit") == {}

    assert await catalog.set_alias("credit", "production", "1") is None
    await catalog.set_alias("credit", "canary", "2")
    assert await catalog.set_alias("credit", "production", "2") == "1"

    assert await catalog.aliases("credit") == {"production": "2", "canary": "2"}
    assert await catalog.resolve("credit", "production") == "2"
    assert await catalog.resolve("credit", "1") == "1"


async def test_aliases_file_is_valid_json_with_update_time(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    await catalog.set_alias("credit", "production", "1")

    document = json.loads((store.root / "models/credit/aliases.json").read_bytes())

    assert document["aliases"] == {"production": "1"}
    assert document["updated_at"].endswith("Z")


async def test_alias_errors(catalog: ModelCatalog, background_bytes: bytes) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    await catalog.publish(make_manifest(version="2"), model_files(background_bytes))

    with pytest.raises(VersionNotFound):
        await catalog.set_alias("credit", "production", "9")
    with pytest.raises(AliasInvalid, match="version"):
        await catalog.set_alias("credit", "2", "1")
    with pytest.raises(AliasInvalid):
        await catalog.set_alias("credit", "../x", "1")
    with pytest.raises(VersionNotFound):
        await catalog.resolve("credit", "staging")
    with pytest.raises(ModelNotFound):
        await catalog.resolve("fraud", "production")
    with pytest.raises(ModelNotFound):
        await catalog.aliases("fraud")


async def test_publishing_a_version_named_like_an_alias_is_refused(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(), model_files(background_bytes))
    await catalog.set_alias("credit", "production", "1")

    with pytest.raises(ManifestInvalid, match="alias"):
        await catalog.publish(make_manifest(version="production"), model_files(background_bytes))


async def test_versions_are_listed_in_natural_order(
    catalog: ModelCatalog, background_bytes: bytes
) -> None:
    for version in ("10", "2", "1", "1.10", "1.9", "9"):
        await catalog.publish(make_manifest(version=version), model_files(background_bytes))

    assert await catalog.list_versions("credit") == ["1", "1.9", "1.10", "2", "9", "10"]


def test_version_sort_key_compares_digit_runs_as_numbers() -> None:
    versions = ["v10", "v2", "2026-01-10", "2026-01-9", "rc", "v2a"]
    assert sorted(versions, key=version_sort_key) == [
        "2026-01-9", "2026-01-10", "rc", "v2", "v2a", "v10",
    ]


async def test_models_are_listed_once_with_their_manifests_only(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    await catalog.publish(make_manifest(name="fraud"), model_files(background_bytes))
    await catalog.publish(make_manifest(), model_files(background_bytes))
    await catalog.publish(make_manifest(version="2"), model_files(background_bytes))
    await store.write("models/orphan/1/model.txt", b"left by a failed publish")

    assert await catalog.list_models() == ["credit", "fraud"]
    with pytest.raises(ModelNotFound):
        await catalog.list_versions("orphan")


async def test_read_manifest_returns_the_manifest_without_reading_files(
    catalog: ModelCatalog, store: LocalArtifactStore, background_bytes: bytes
) -> None:
    published = await catalog.publish(make_manifest(), model_files(background_bytes))
    (_version_dir(store) / "model.txt").write_bytes(b"tampered")

    assert await catalog.read_manifest("credit", "1") == published
    with pytest.raises(VersionNotFound):
        await catalog.read_manifest("credit", "2")


async def test_empty_store_has_no_models(catalog: ModelCatalog) -> None:
    assert await catalog.list_models() == []
    with pytest.raises(ModelNotFound):
        await catalog.list_versions("credit")


async def test_catalog_with_trusted_keys_refuses_to_publish_what_it_would_not_load(
    store: LocalArtifactStore, background_bytes: bytes, keys: tuple[bytes, bytes]
) -> None:
    trusting = ModelCatalog(store, trusted_public_keys=[keys[1]])
    untrusted_private, _ = generate_signing_key()

    with pytest.raises(SignatureInvalid, match="signing key"):
        await trusting.publish(make_manifest(), model_files(background_bytes))
    with pytest.raises(SignatureInvalid, match="not a trusted key"):
        await trusting.publish(make_manifest(), model_files(background_bytes),
                               signing_key_pem=untrusted_private)

    assert await store.list("") == []
    await trusting.publish(make_manifest(), model_files(background_bytes),
                           signing_key_pem=keys[0])
    assert (await trusting.load("credit", "1")).manifest.name == "credit"
