"""Resolves aliases and keeps verified, ready-to-explain model versions in memory."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from explainers.counterfactual import DeferredSearcher
from explainers.encoding import RowEncoder, encode_frame
from explainers.protocols import Explainer, ScoringModel
from explainers.registry import LINEAR_KERNEL, build_explainable
from explainers.tree_linear import memory_budget
from explainers.types import FeatureKind, FeatureSpec, FloatMatrix, ModelSchema, Task
from service.errors import ModelUnavailable, ModelUnknown, VersionUnknown
from service.heap import freeze_heap
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
    counterfactuals: DeferredSearcher
    """The counterfactual searcher, built on first use."""

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
    background_rows: int, tree_kernel: str = LINEAR_KERNEL,
) -> ReadyModel:
    """Parse verified files and build the explainer (CPU-bound: run it in a thread)."""
    started = time.perf_counter()
    key = f"models/{manifest.name}/{manifest.version}"
    if manifest.flavor == "lightgbm":
        model_object: object = parse_lightgbm(files["model"])
    else:
        model_object = parse_skops(files["model"], key=f"{key}/{manifest.files['model'].path}")
    schema = schema_of(manifest)
    sample = encode_frame(parse_background(files["background"]), schema)
    background = sample[:background_rows]
    explainable = build_explainable(manifest.flavor, model_object, schema, background=background,
                                    memory_budget=memory_budget(len(files["model"])),
                                    tree_kernel=tree_kernel)
    return ReadyModel(
        manifest=manifest, manifest_sha256=manifest_sha256, schema=schema,
        model=explainable.model, explainer=explainable.explainer,
        masker=Masker(manifest, hmac_key=hmac_key), rules=feature_rules(manifest),
        background=background, encoder=RowEncoder(schema),
        load_ms=(time.perf_counter() - started) * 1000,
        counterfactuals=DeferredSearcher(explainable.model, sample,
                                         explainer=explainable.explainer),
    )


class ModelLoader:
    """Loads versions on first use and caches alias resolution for a short time."""

    def __init__(self, catalog: ModelCatalog, *, hmac_key: bytes, alias_ttl_s: float,
                 background_rows: int, tree_kernel: str = LINEAR_KERNEL,
                 freeze_loaded: bool = True) -> None:
        self._catalog = catalog
        self._freeze_loaded = freeze_loaded
        self._tree_kernel = tree_kernel
        self._hmac_key = hmac_key
        self._alias_ttl_s = alias_ttl_s
        self._background_rows = background_rows
        self._ready: dict[tuple[str, str], ReadyModel] = {}
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._resolved: dict[tuple[str, str | None], tuple[str, float]] = {}
        self.kernel_warm_up_ms: float | None = None
        """Milliseconds the process took to compile (or load) the TreeSHAP kernels."""
        # Last version served per alias (or per "no version"): kept serving when the
        # alias moves to a version that is refused (tampered, unsigned, unparseable).
        self._serving: dict[tuple[str, str | None], ReadyModel] = {}
        # Refused versions are not re-read from the store on every request.
        self._refused: dict[tuple[str, str], tuple[ModelUnavailable, float]] = {}
        self._fallbacks: dict[tuple[str, str | None], str] = {}

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
        """Return the ready model for a version or alias, loading it if needed.

        When an alias points at a version that is refused, the version the alias served
        before keeps serving (logged loudly); an explicit version is never substituted.
        """
        resolved = await self.resolve(name, version)
        if resolved == version:
            return await self._get_version(name, resolved)
        try:
            ready = await self._get_version(name, resolved)
        except ModelUnavailable as exc:
            previous = self._serving.get((name, version))
            if previous is None:
                raise
            logger.error("alias %s of %s points at a refused version; still serving %s: %s",
                         version or "production", name, previous.label, exc.reason)
            self._fallbacks[(name, version)] = (
                f"alias {version or 'production'} points at refused version {resolved} "
                f"({exc.reason}); still serving {previous.manifest.version}")
            return previous
        self._serving[(name, version)] = ready
        self._fallbacks.pop((name, version), None)
        return ready

    def fallbacks(self) -> dict[tuple[str, str | None], str]:
        """Aliases now served by their previous version, with why (for /readyz)."""
        return dict(self._fallbacks)

    async def _get_version(self, name: str, resolved: str) -> ReadyModel:
        key = (name, resolved)
        ready = self._ready.get(key)
        if ready is not None:
            return ready
        refused = self._refused.get(key)
        if refused is not None and refused[1] > time.monotonic():
            raise refused[0]
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            ready = self._ready.get(key)
            if ready is None:
                try:
                    ready = await self._load(name, resolved)
                except ModelUnavailable as exc:
                    self._refused[key] = (exc, time.monotonic() + self._alias_ttl_s)
                    raise
                self._ready[key] = ready
                logger.info("loaded %s in %.0f ms (%s)", ready.label, ready.load_ms,
                            ready.explainer.method)
                # Loaded models live as long as the process (nothing unloads them).
                if self._freeze_loaded:
                    freeze_heap(ready.label)
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
                tree_kernel=self._tree_kernel,
            )
        except StorageError as exc:
            raise ModelUnavailable(name, version, str(exc)) from exc
