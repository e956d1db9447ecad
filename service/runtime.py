"""The long-lived objects of one running service, built in the app's lifespan."""

from __future__ import annotations

from dataclasses import dataclass

from service.auth import ApiKeyTable
from service.drift.windows import DriftWindows
from service.incidents.state import IncidentRuntime
from service.metrics import Metrics
from service.model_loader import ModelLoader
from service.sampling.engine import SamplingEngine
from service.scale_out import ScaleOut
from service.settings import Settings
from service.trace_builder import TraceOptions
from storage.crypto import InputSealer
from storage.protocols import AuditLog, RecordLog, TraceStore


@dataclass(frozen=True, slots=True)
class Runtime:
    """Everything a request handler needs, reached through `deps.RuntimeDep`."""

    settings: Settings
    loader: ModelLoader
    traces: TraceStore
    records: RecordLog
    sealer: InputSealer
    policy: SamplingEngine
    """Per-model sampling policies, incident mode and budgets (service/sampling)."""
    metrics: Metrics
    api_keys: ApiKeyTable | None
    trace_options: TraceOptions
    drift: DriftWindows
    """Live drift windows (service/drift), fed by ingest."""
    audit: AuditLog
    """Append-only log of unmasked reads and admin actions (service/audit.py)."""
    incidents: IncidentRuntime
    """Incident store, outbox wake-up and baseline cache (service/incidents)."""
    scale_out: ScaleOut | None = None
    """Job stream, outage spool and archive (service/scale_out.py)."""
