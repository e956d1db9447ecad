"""Resolves aliases and keeps verified, ready-to-explain model versions in memory."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from explainers.encoding import RowEncoder, encode_frame
from explainers.protocols import Explainer, ScoringModel
from explainers.registry import build_explainable
from explainers.types import FeatureKind, FeatureSpec, FloatMatrix, ModelSchema, Task
from service.errors import ModelUnavailable, ModelUnknown, VersionUnknown
from service.validation import FeatureRule, feature_rules
from storage.catalog import ModelCatalog
from storage.errors import StorageError, StoreUnavailable
from storage.formats import parse_background, parse_lightgbm, parse_skops
from storage.manifest import Manifest
from storage.masking import Masker

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReadyModel:
    """A verified model version with its explainer, masker and validation rules."""

    manifest: Manifest
    manifest_sha256: str
    schema: ModelSchema
    model: ScoringModel
    explainer: Explainer
    masker: Masker
    rules: tuple[FeatureRule, ...]
    background: FloatMatrix
    encoder: RowEncoder
    load_ms: float

    @property
    def label(self) -> str:
        """`name@version`, as shown in errors and policies."""
        return f"{self.manifest.name}@{self.manifest.version}"


def schema_of(manifest: Manifest) -> ModelSchema:
    """Build the explainers' view of a manifest."""
    specs = tuple(
        FeatureSpec(f.name, FeatureKind(f.type), tuple(f.categories or ()))
        for f in manifest.features
    )
    return ModelSchema(specs, Task(manifest.task), tuple(manifest.classes))


def build_ready_model(
    manifest: Manifest, manifest_sha256: str, files: dict[str, bytes], *, hmac_key: bytes,
    background_rows: int,
) -> ReadyModel:
    """Parse verified files and build the explainer (CPU-bound: run it in a thread)."""
    started = time.perf_counter()
    key = f"models/{manifest.name}/{manifest.version}"
    if manifest.flavor == "lightgbm":
        model_object: object = parse_lightgbm(files["model"])
    else:
        model_object = parse_skops(files["model"], key=f"{key}/{manifest.files['model'].path}")
    schema = schema_of(manifest)
    background = encode_frame(parse_background(files["background"]), schema)[:background_rows]
    explainable = build_explainable(manifest.flavor, model_object, schema, background=background)
    return ReadyModel(
        manifest=manifest, manifest_sha256=manifest_sha256, schema=schema,
        model=explainable.model, explainer=explainable.explainer,
        masker=Masker(manifest, hmac_key=hmac_key), rules=feature_rules(manifest),
        background=background, encoder=RowEncoder(schema),
        load_ms=(time.perf_counter() - started) * 1000,
    )


class ModelLoader:
    """Loads versions on first use and caches alias resolution for a short time."""

    def __init__(self, catalog: ModelCatalog, *, hmac_key: bytes, alias_ttl_s: float,
                 background_rows: int) -> None:
        self._catalog = catalog
        self._hmac_key = hmac_key
        self._alias_ttl_s = alias_ttl_s
        self._background_rows = background_rows
        self._ready: dict[tuple[str, str], ReadyModel] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._resolved: dict[tuple[str, str | None], tuple[str, float]] = {}

    @property
    def catalog(self) -> ModelCatalog:
        """The artifact catalog behind this loader."""
        return self._catalog

    def loaded(self) -> list[ReadyModel]:
        """Versions currently in memory."""
        return list(self._ready.values())

    async def resolve(self, name: str, version: str | None) -> str:
        """Map a version, an alias, or nothing (the production alias) to a version."""
        key = (name, version)
        cached = self._resolved.get(key)
        now = time.monotonic()
        if cached is not None and cached[1] > now:
            return cached[0]
        resolved = await self._resolve_uncached(name, version)
        self._resolved[key] = (resolved, now + self._alias_ttl_s)
        return resolved

    async def _resolve_uncached(self, name: str, version: str | None) -> str:
        if name not in await self._catalog.list_models():
            raise ModelUnknown(name)
        if version is not None and version in await self._catalog.list_versions(name):
            return version
        aliases = await self._catalog.aliases(name)
        wanted = version or "production"
        if wanted in aliases:
            return aliases[wanted]
        raise VersionUnknown(name, wanted)

    async def get(self, name: str, version: str | None) -> ReadyModel:
        """Return the ready model for a version or alias, loading it if needed."""
        resolved = await self.resolve(name, version)
        key = (name, resolved)
        ready = self._ready.get(key)
        if ready is not None:
            return ready
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            ready = self._ready.get(key)
            if ready is None:
                ready = await self._load(name, resolved)
                self._ready[key] = ready
                logger.info("loaded %s in %.0f ms (%s)", ready.label, ready.load_ms,
                            ready.explainer.method)
        return ready

    async def _load(self, name: str, version: str) -> ReadyModel:
        try:
            loaded = await self._catalog.load(name, version)
        except StoreUnavailable:
            raise
        except StorageError as exc:
            raise ModelUnavailable(name, version, str(exc)) from exc
        try:
            return await asyncio.to_thread(
                build_ready_model, loaded.manifest, loaded.manifest_sha256, dict(loaded.files),
                hmac_key=self._hmac_key, background_rows=self._background_rows,
            )
        except StorageError as exc:
            raise ModelUnavailable(name, version, str(exc)) from exc
