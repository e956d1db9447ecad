"""The long-lived objects of one running service, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from service.auth import ApiKeyTable
from service.metrics import Metrics
from service.model_loader import ModelLoader
from service.sampling.policy import DefaultPolicy
from service.settings import Settings
from service.trace_builder import TraceOptions
from storage.crypto import InputSealer
from storage.protocols import RecordLog, TraceStore


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request handler needs, reached through `deps.RuntimeDep`."""

    settings: Settings
    loader: ModelLoader
    traces: TraceStore
    records: RecordLog
    sealer: InputSealer
    policy: DefaultPolicy
    metrics: Metrics
    api_keys: ApiKeyTable | None
    trace_options: TraceOptions
