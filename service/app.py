"""Application factory and lifespan: builds the runtime once, from one Settings object."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from explainers.errors import ExplainerError
from service.auth import ApiKeyTable
from service.drift.metrics import DriftMetrics
from service.drift.tasks import start_drift_tasks, stop_drift_tasks
from service.drift.windows import DriftWindows
from service.errors import ServiceError, StartupRefused
from service.heap import freeze_heap
from service.incidents.background import start_incident_tasks, stop_incident_tasks
from service.incidents.state import IncidentMetrics, IncidentRuntime
from service.keys_cli import master_key_of
from service.log_format import TraceContextMiddleware
from service.metrics import Metrics
from service.model_loader import ModelLoader
from service.problems import install_problem_handlers
from service.routes import (
    drift,
    explanations,
    health,
    incidents,
    labels,
    models,
    policies,
    predictions,
    traces,
)
from service.runtime import Runtime
from service.sampling.engine import build_sampling_engine
from service.scale_out import open_scale_out
from service.scale_out_tasks import scale_out_tasks
from service.security import install_security
from service.settings import Settings
from service.task_control import stop_tasks
from service.trace_builder import TraceOptions
from service.ui.routes import router as ui_router
from storage.artifact_factory import open_artifact_store
from storage.audit_factory import open_audit_log
from storage.catalog import ModelCatalog
from storage.crypto import InputSealer
from storage.drift_factory import open_drift_store
from storage.errors import StorageError
from storage.incident_factory import open_incident_store
from storage.keyring import (
    Keyring,
    create_keyring_file,
    load_keyring,
    parse_keyring,
)
from storage.protocols import ExpiringStore
from storage.trace_factory import open_trace_store

logger = logging.getLogger(__name__)


def load_or_create_keyring(settings: Settings) -> Keyring:
    """Read the configured keyring; the embedded mode generates one in data_dir."""
    master = master_key_of(settings)
    if settings.keyring is not None:
        return load_keyring(settings.keyring, master_key=master)
    if settings.keyring_data is not None:
        return parse_keyring(settings.keyring_data.get_secret_value(),
                             source="WHYLENS_KEYRING_DATA", master_key=master)
    if settings.traces is not None and not settings.traces.startswith("sqlite"):
        raise StartupRefused("WHYLENS_KEYRING (or WHYLENS_KEYRING_DATA) is required with a "
                             "shared trace store: replicas must seal and pseudonymise with "
                             "the same keys")
    path = settings.data_dir / "keyring.yaml"
    if not path.exists():
        create_keyring_file(path)
        logger.warning("generated a new keyring at %s (embedded mode); back it up: sealed "
                       "inputs cannot be opened without it", path)
    return load_keyring(path)


def warn_deprecated(settings: Settings) -> None:
    """Name settings that are accepted but no longer do anything."""
    if settings.counterfactuals.sampled:
        logger.warning("WHYLENS_COUNTERFACTUALS__SAMPLED is deprecated and ignored: set "
                       "`counterfactuals: N` on the sampling policy's rules of %s instead "
                       "(PUT /v1/models/{name}/policy)",
                       ", ".join(sorted(settings.counterfactuals.sampled)))


def api_key_table(settings: Settings) -> ApiKeyTable | None:
    """Return the API keys, None when auth is explicitly off; refuse when neither is set."""
    if settings.api_keys is not None:
        return ApiKeyTable.from_file(settings.api_keys)
    if settings.auth == "off":
        logger.warning("AUTHENTICATION IS OFF (WHYLENS_AUTH=off): every caller is admin; "
                       "never run this beside real traffic")
        return None
    raise StartupRefused("set WHYLENS_API_KEYS (hashed keys and roles) or WHYLENS_AUTH=off")


async def build_runtime(settings: Settings, *, serving: bool = True) -> Runtime:
    """Open stores, load keys and build the model loader (`serving=False`: no API keys)."""
    api_keys = api_key_table(settings) if serving else None
    warn_deprecated(settings)
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
                         background_rows=settings.explain.background_rows,
                         tree_kernel=settings.explain.tree_kernel,
                         freeze_loaded=settings.freeze_loaded_models)
    metrics = Metrics()
    scale_out = open_scale_out(settings, trace_store, metrics.registry)
    drift_store = open_drift_store(settings.traces_url, key_prefix=settings.redis_key_prefix,
                                   retention_s=settings.drift.retention_s)
    return Runtime(
        settings=settings, loader=loader, traces=scale_out.store, records=scale_out.store,
        sealer=InputSealer(keyring),
        policy=build_sampling_engine(settings, store, metrics.registry),
        incidents=IncidentRuntime(
            open_incident_store(settings.traces_url, key_prefix=settings.redis_key_prefix),
            trace_store, IncidentMetrics(metrics.registry)),
        metrics=metrics, api_keys=api_keys, scale_out=scale_out,
        trace_options=TraceOptions(settings.explain.top_k, settings.explain.mismatch_tolerance,
                                   counterfactuals=settings.counterfactuals),
        drift=DriftWindows(drift_store, settings.drift, DriftMetrics(metrics.registry)),
        audit=open_audit_log(settings.traces_url, key_prefix=settings.redis_key_prefix,
                             max_entries=settings.audit.max_entries),
    )


async def close_runtime(runtime: Runtime) -> None:
    """Close every store and client the runtime opened, once its tasks have stopped.

    Each is closed on its own: one that fails is logged and the rest still close.
    """
    closers = [runtime.traces.close, runtime.drift.close, runtime.audit.close,
               runtime.policy.close, runtime.incidents.store.close]
    if runtime.scale_out is not None:
        closers.append(runtime.scale_out.close)
    for close in closers:
        try:
            await close()
        except Exception:
            logger.exception("closing %s failed", getattr(close, "__qualname__", close))


async def preload(runtime: Runtime) -> None:
    """Load the aliased versions now so the first request does not pay for it."""
    from explainers.registry import warm_up

    runtime.loader.kernel_warm_up_ms = await asyncio.to_thread(warm_up)
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
    if runtime.settings.freeze_loaded_models:
        freeze_heap("preload")


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
                _purge_periodically(runtime.traces, settings.retention.purge_interval_s),
                name="whylens-trace-purge")
        drift_tasks = start_drift_tasks(runtime)
        incident_tasks = await start_incident_tasks(runtime)
        try:
            async with scale_out_tasks(runtime, explain_stream=settings.explain_mode == "queue"):
                yield
        finally:
            await stop_drift_tasks(drift_tasks)
            await stop_incident_tasks(incident_tasks)
            if purger is not None:
                await stop_tasks([purger])
            await close_runtime(runtime)

    app = FastAPI(title="whylens", version="1", lifespan=lifespan,
                  description="Explainability traces for production ML")
    install_problem_handlers(app)
    install_security(app, settings.limits)
    app.add_middleware(TraceContextMiddleware)
    for module in (predictions, explanations, traces, models, health, drift, labels,
                   incidents, policies):
        app.include_router(module.router)
    app.include_router(ui_router)  # triage pages under /ui/ (docs/ui.md)
    return app
