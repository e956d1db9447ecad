"""Application factory and lifespan: builds the runtime once, from one Settings object."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from explainers.errors import ExplainerError
from service.auth import ApiKeyTable
from service.errors import ServiceError, StartupRefused
from service.metrics import Metrics
from service.model_loader import ModelLoader
from service.problems import install_problem_handlers
from service.routes import explanations, health, models, predictions, traces
from service.runtime import Runtime
from service.sampling.policy import DefaultPolicy
from service.settings import Settings
from service.trace_builder import TraceOptions
from storage.artifact_factory import open_artifact_store
from storage.catalog import ModelCatalog
from storage.crypto import InputSealer
from storage.errors import StorageError
from storage.keyring import Keyring, create_keyring_file, load_keyring
from storage.protocols import ExpiringStore
from storage.trace_factory import open_trace_store

logger = logging.getLogger(__name__)


def load_or_create_keyring(settings: Settings) -> Keyring:
    """Read the configured keyring; the embedded mode generates one in data_dir."""
    if settings.keyring is not None:
        return load_keyring(settings.keyring)
    if settings.traces is not None and not settings.traces.startswith("sqlite"):
        raise StartupRefused("WHYLENS_KEYRING is required with a shared trace store: replicas "
                             "must seal and pseudonymise with the same keys")
    path = settings.data_dir / "keyring.yaml"
    if not path.exists():
        create_keyring_file(path)
        logger.warning("generated a new keyring at %s (embedded mode); back it up: sealed "
                       "inputs cannot be opened without it", path)
    return load_keyring(path)


def api_key_table(settings: Settings) -> ApiKeyTable | None:
    """Return the API keys, None when auth is explicitly off; refuse when neither is set."""
    if settings.api_keys is not None:
        return ApiKeyTable.from_file(settings.api_keys)
    if settings.auth == "off":
        logger.warning("AUTHENTICATION IS OFF (WHYLENS_AUTH=off): every caller is admin; "
                       "never run this beside real traffic")
        return None
    raise StartupRefused("set WHYLENS_API_KEYS (hashed keys and roles) or WHYLENS_AUTH=off")


async def build_runtime(settings: Settings) -> Runtime:
    """Open stores, load keys and build the model loader."""
    api_keys = api_key_table(settings)
    keyring = load_or_create_keyring(settings)
    store = open_artifact_store(settings.artifacts_uri, s3_endpoint_url=settings.s3_endpoint_url)
    trusted = [path.read_bytes() for path in settings.trusted_keys]
    catalog = ModelCatalog(store, trusted_public_keys=trusted)
    trace_store = open_trace_store(
        settings.traces_url, key_prefix=settings.redis_key_prefix,
        trace_ttl_s=settings.retention.traces_s, record_ttl_s=settings.retention.records_s,
    )
    loader = ModelLoader(catalog, hmac_key=keyring.active("hmac").secret,
                         alias_ttl_s=settings.explain.alias_refresh_s,
                         background_rows=settings.explain.background_rows)
    sampling = settings.sampling
    return Runtime(
        settings=settings, loader=loader, traces=trace_store, records=trace_store,
        sealer=InputSealer(keyring),
        policy=DefaultPolicy(sampling.rate, sampling.near_threshold,
                             frozenset(sampling.always_cohorts)),
        metrics=Metrics(), api_keys=api_keys,
        trace_options=TraceOptions(settings.explain.top_k, settings.explain.mismatch_tolerance),
    )


async def preload(runtime: Runtime) -> None:
    """Load the aliased versions now so the first request does not pay for it."""
    from explainers.registry import warm_up

    await asyncio.to_thread(warm_up)
    try:
        names = await runtime.loader.catalog.list_models()
    except StorageError as exc:
        logger.error("cannot list models at start-up: %s", exc)
        return
    for name in names:
        for alias in runtime.settings.preload_aliases:
            try:
                if alias in await runtime.loader.catalog.aliases(name):
                    await runtime.loader.get(name, alias)
            except (ServiceError, StorageError, ExplainerError):
                # One broken version must not stop start-up; /readyz reports it.
                logger.exception("cannot preload %s@%s", name, alias)


async def _purge_periodically(store: ExpiringStore, interval_s: int) -> None:
    while True:
        await asyncio.sleep(interval_s)
        try:
            purged = await store.purge_expired()
            logger.info("purged %d expired rows", purged)
        except StorageError:
            logger.exception("purging expired rows failed")


def create_app(settings: Settings) -> FastAPI:
    """Build the FastAPI app; stores and models are opened in the lifespan."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = await build_runtime(settings)
        app.state.runtime = runtime
        await preload(runtime)
        purger = None
        if isinstance(runtime.traces, ExpiringStore):
            purger = asyncio.create_task(
                _purge_periodically(runtime.traces, settings.retention.purge_interval_s))
        try:
            yield
        finally:
            if purger is not None:
                purger.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await purger
            await runtime.traces.close()

    app = FastAPI(title="whylens", version="1", lifespan=lifespan,
                  description="Explainability traces for production ML")
    install_problem_handlers(app)
    for module in (predictions, explanations, traces, models, health):
        app.include_router(module.router)
    return app
