"""The one settings object (environment prefix WHYLENS_); defaults give the embedded mode."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from storage.manifest import DriftOverrides, RetentionOverrides


class SamplingSettings(BaseModel):
    """Default sampling policy, used for models without a published policy."""

    rate: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of ordinary records explained, chosen by a stable hash of the request ID."""
    near_threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    """Explain every binary decision whose score is this close to its threshold (0: off)."""
    always_cohorts: list[str] = Field(default_factory=lambda: ["canary"])
    """Cohorts (`context.cohort`) whose records are always explained."""
    budget_per_s: float | None = Field(default=None, gt=0)
    """Explanations per second per model and replica for the default policy (None: no cap)."""
    budget_burst: float | None = Field(default=None, ge=1)
    """Bucket size of that budget (default: budget_per_s, at least 1)."""
    budget_exempt: list[str] = Field(default_factory=lambda: ["canary", "incident"])
    """Reasons the default policy's budget never defers."""
    policy_refresh_s: float = Field(default=5.0, gt=0)
    """How often a replica re-reads published policies and open incidents."""


class RetentionSettings(BaseModel):
    """How long each kind of data lives in the trace store."""

    traces_s: int = Field(default=30 * 86400, gt=0)
    """Masked traces."""
    records_s: int = Field(default=7 * 86400, gt=0)
    """Compact prediction log and sealed raw inputs (needed for on-demand explanations)."""
    purge_interval_s: int = Field(default=3600, gt=0)
    """How often the embedded store deletes expired rows."""
    inputs_s: int | None = Field(default=None, gt=0)
    """Sealed raw inputs, when shorter than records_s (unset: as long as the log entry)."""
    incident_traces_s: int = Field(default=90 * 86400, gt=0)
    """Traces linked to an incident, counted from the incident's close (held while open)."""
    archive_traces_s: int = Field(default=400 * 86400, gt=0)
    """Archived traces, per `dt=` day partition counted from the end of its day."""
    archive_records_s: int = Field(default=400 * 86400, gt=0)
    """Archived prediction-log entries, per `dt=` day partition from the end of its day."""
    models: dict[str, RetentionOverrides] = Field(default_factory=dict)
    """Per-model retention; wins over the manifest's `retention` section."""


class LimitSettings(BaseModel):
    """Input hardening: anything beyond these is a 4xx, never a 5xx."""

    body_bytes: int = Field(default=8 * 1024 * 1024, gt=0)
    """Largest accepted request body."""
    batch_records: int = Field(default=1000, gt=0)
    """Most records in one `POST /v1/predictions` batch."""
    string_chars: int = Field(default=256, gt=0)
    """Longest accepted string feature value."""
    counterfactuals: int = Field(default=10, ge=0)
    """Most counterfactuals one explain call may ask for."""
    header_bytes: int = Field(default=16 * 1024, gt=0)
    """Largest accepted total size of the request headers (431 beyond)."""
    feature_name_chars: int = Field(default=128, gt=0)
    """Longest accepted feature name (and most unknown names reported per record)."""


class ExplainSettings(BaseModel):
    """Explanation output and model tolerances."""

    top_k: int = Field(default=5, gt=0)
    """Features listed in a trace's `explanation.top`."""
    mismatch_tolerance: float = Field(default=1e-3, ge=0.0)
    """Absolute score difference above which logged and recomputed predictions mismatch."""
    background_rows: int = Field(default=100, gt=0)
    """Background rows used by the model-agnostic explainer."""
    alias_refresh_s: float = Field(default=10.0, gt=0)
    """How long a resolved alias (production, canary) is trusted before re-reading it."""
    tree_kernel: Literal["linear", "reference"] = "linear"
    """TreeSHAP for tree models: `linear` (compiled Linear TreeSHAP, docs/treeshap.md) or
    `reference` (LightGBM's own pred_contrib; the classic kernel for scikit-learn trees)."""


class DriftSettings(BaseModel):
    """Live drift windows, the drift status rule and the drift gauges (docs/drift.md)."""

    bucket_s: int = Field(default=300, gt=0)
    """Length of a live window bucket, keyed by the record's event time."""
    rollup_s: int = Field(default=3600, gt=0)
    """Length of the coarser buckets kept beside (a multiple of bucket_s) for long windows."""
    retention_s: int = Field(default=7 * 86400, gt=0)
    """How long buckets are kept after their end."""
    trace_window_s: int = Field(default=3600, gt=0)
    """Length of the trailing window in a trace's `drift` block."""
    segment_dimensions: list[str] = Field(default_factory=lambda: ["segment", "region",
                                                                   "cohort"])
    """Context keys whose values get their own windows."""
    segment_cap: int = Field(default=20, ge=0)
    """Distinct values tracked per model and dimension; later ones are pooled as `other`."""
    cache_s: float = Field(default=5.0, ge=0)
    """How long a window read is reused (trace reads stay cheap)."""
    write_delay_s: float = Field(default=0.1, ge=0, le=10)
    """How long new records wait to be counted together (one store write per bucket);
    a window read counts them at once."""
    gauge_refresh_s: float = Field(default=60.0, gt=0)
    """How often the drift gauges of /metrics are recomputed."""
    gauge_window_s: int = Field(default=3600, gt=0)
    """Trailing window of the drift gauges."""
    gauge_features: int = Field(default=50, ge=0)
    """Most features per model version exported as gauges (bounded label cardinality)."""
    thresholds: DriftOverrides = Field(default_factory=DriftOverrides)
    """Changes to the documented default thresholds, for every model."""
    models: dict[str, DriftOverrides] = Field(default_factory=dict)
    """Per-model threshold changes; they win over the manifest's `drift` section."""

    @model_validator(mode="after")
    def _rollup_is_a_multiple(self) -> DriftSettings:
        if self.rollup_s % self.bucket_s:
            raise ValueError("drift.rollup_s must be a multiple of drift.bucket_s")
        return self


class CounterfactualSettings(BaseModel):
    """Counterfactual search (docs/counterfactuals.md); per-call cap: limits.counterfactuals."""

    default_count: int = Field(default=3, ge=1)
    """Counterfactuals asked when the explain body has a `counterfactuals` object but the
    query string names no count."""
    sampled: dict[str, int] = Field(default_factory=dict)
    """Deprecated and ignored (a warning at start): counterfactuals of sampled traces are
    the sampling policy's `counterfactuals` per rule (docs/counterfactuals.md)."""
    budget: int = Field(default=1_000_000, gt=0)
    """Most candidate evaluations of one search."""
    max_changes: int = Field(default=4, ge=1)
    """Most features one counterfactual may change."""


class AuditSettings(BaseModel):
    """The append-only audit log of unmasked reads and admin actions (docs/security.md)."""

    max_entries: int = Field(default=1_000_000, gt=0)
    """Entries kept; older ones are trimmed (Redis XADD MAXLEN ~, SQLite in batches)."""


class QueueSettings(BaseModel):
    """Explanation jobs on a Redis Stream, consumed by `whylens worker` (docs/scale-out.md)."""

    redis_url: str | None = None
    """Redis of the job stream and archive feed (unset: the trace store's, which must be Redis)."""
    max_length: int = Field(default=1_000_000, gt=0)
    """Stream length bound (XADD MAXLEN ~); ingest explains inline above `high_water` of it."""
    high_water: float = Field(default=0.9, gt=0.0, le=1.0)
    """Share of max_length beyond which API replicas explain inline instead of enqueueing."""
    batch_size: int = Field(default=64, gt=0)
    """Most jobs a worker reads and explains together."""
    block_ms: int = Field(default=1000, gt=0, le=4000)
    """How long a worker's read waits for new jobs (below the Redis socket timeout)."""
    claim_idle_ms: int = Field(default=60_000, gt=0)
    """A job delivered this long ago and not acknowledged is taken over by another worker."""
    max_deliveries: int = Field(default=5, gt=0)
    """Deliveries after which a failing job goes to the dead-letter stream."""
    dead_letter_max_length: int = Field(default=100_000, gt=0)
    """Length bound of the dead-letter stream."""
    stats_interval_s: float = Field(default=5.0, gt=0)
    """How often replicas read the stream's length, lag and pending count for /metrics."""


class SpoolSettings(BaseModel):
    """The local outage spool: records kept on disk while the trace store is unreachable."""

    enabled: bool = True
    """Spool accepted records during a store outage (off: answer 503 at once)."""
    dir: Path | None = None
    """Spool folder, one per replica (default: <data_dir>/spool)."""
    max_bytes: int = Field(default=256 * 1024 * 1024, gt=0)
    """Size cap; beyond it ingest answers a 503 `spool-full` problem."""
    replay_interval_s: float = Field(default=1.0, gt=0)
    """How often the spool is checked and, when the store answers, replayed."""
    replay_batch: int = Field(default=500, gt=0)
    """Records replayed per store call."""


class ArchiveSettings(BaseModel):
    """Batches of traces and prediction logs archived to object storage (docs/scale-out.md)."""

    enabled: bool = False
    """Feed every stored trace and record to the archive; `whylens worker` writes batches."""
    uri: str | None = None
    """Archive location: file:///path or s3://bucket/prefix (default: the artifact store)."""
    batch_records: int = Field(default=1000, gt=0)
    """Most traces and records in one archive batch."""
    flush_interval_s: float = Field(default=60.0, gt=0)
    """A batch is written at the latest this long after its first entry was read."""
    index_ttl_s: int | None = Field(default=None, gt=0)
    """Cap on how long an archived trace stays fetchable by request ID (unset: until its
    partition is purged, i.e. the end of its day plus `retention.archive_traces_s`)."""
    purge: bool = True
    """Workers delete partitions past their retention (off: an S3 lifecycle rule does)."""
    purge_interval_s: float = Field(default=3600.0, gt=0)
    """How often a worker deletes archive partitions past their retention."""
    purge_lease_s: float = Field(default=600.0, gt=0)
    """Lease of the purge lock in Redis (renewed per partition): one purging worker."""
    timeout_s: float = Field(default=30.0, gt=0)
    """Connect and read timeout of one object storage call."""
    retry_base_s: float = Field(default=0.5, gt=0)
    """First retry delay of a failed PUT (doubling, with jitter)."""
    retry_cap_s: float = Field(default=30.0, gt=0)
    """Longest retry delay; retries go on until the PUT succeeds."""


class IncidentSettings(BaseModel):
    """Incident summaries, bundles and backfills (docs/sampling-and-incidents.md)."""

    summary_traces: int = Field(default=2000, gt=0)
    """Newest linked traces aggregated by an incident summary."""
    compare_traces: int = Field(default=200, ge=0)
    """Canary traces re-explained under production for the summary's comparison."""
    bundle_traces: int = Field(default=1000, ge=0)
    """Newest linked traces put in an export bundle."""
    backfill_page: int = Field(default=200, gt=0)
    """Records a backfill reads (and explains at most) per step."""
    backfill_slice_s: float = Field(default=2.0, gt=0)
    """A backfill yields to other outbox jobs after about this long."""


class OutboxSettings(BaseModel):
    """The durable outbox of exports and backfills (one worker per replica)."""

    poll_s: float = Field(default=2.0, gt=0)
    """How often the worker looks for due jobs (a job queued here wakes it at once)."""
    lease_s: float = Field(default=120.0, gt=0)
    """A claimed job is handed to another worker if not finished or rescheduled by then."""
    max_attempts: int = Field(default=12, gt=0)
    """Failed attempts before an export is marked failed (it keeps its last error)."""
    backoff_s: float = Field(default=2.0, gt=0)
    """First retry delay; doubled per attempt (with jitter) up to backoff_max_s."""
    backoff_max_s: float = Field(default=600.0, gt=0)
    """Longest retry delay, unless a 429 Retry-After asks for longer."""
    timeout_s: float = Field(default=10.0, gt=0)
    """HTTP timeout of one call to an export target."""


class ServiceNowSettings(BaseModel):
    """ServiceNow Table and Attachment APIs; basic auth or an OAuth bearer token."""

    instance_url: str | None = None
    """e.g. https://acme.service-now.com (unset: the servicenow target is off)."""
    username: str | None = None
    password: SecretStr | None = None
    oauth_token: SecretStr | None = None
    """Bearer token; wins over username/password when both are set."""
    table: str = Field(default="incident", pattern=r"^[a-z_][a-z0-9_]{0,79}$")
    """Table holding the incidents (looked up by `number`)."""


class WebhookSettings(BaseModel):
    """A generic webhook target: JSON POST with an HMAC-SHA256 signature of the body."""

    url: str | None = None
    """Receiver URL (unset: the webhook target is off)."""
    secret: SecretStr | None = None
    """HMAC key; the signature header is `sha256=<hex>` of the raw body."""
    signature_header: str = "X-Whylens-Signature"


class Settings(BaseSettings):
    """Everything whylens reads from the environment, validated once at start."""

    model_config = SettingsConfigDict(
        env_prefix="WHYLENS_", env_nested_delimiter="__", extra="forbid"
    )

    data_dir: Path = Path(".whylens")
    """Folder of the embedded mode: artifacts, SQLite database, generated keyring."""
    artifacts: str | None = None
    """Artifact store URI: file:///path or s3://bucket/prefix (default: <data_dir>/artifacts)."""
    s3_endpoint_url: str | None = None
    """Endpoint of an S3-compatible server (unset: AWS)."""
    traces: str | None = None
    """Trace store URL: sqlite:///path.db or redis://host:6379/0 (default: SQLite in data_dir)."""
    redis_key_prefix: str = "wl"
    """Prefix of every Redis key, so several deployments can share one server."""
    keyring: Path | None = None
    """Keyring file (YAML/JSON). Unset: the embedded mode creates <data_dir>/keyring.yaml."""
    keyring_data: SecretStr | None = None
    """The keyring document itself (an environment secret), used when `keyring` is unset."""
    keyring_master_key: SecretStr | None = None
    """Base64 of a 32-byte key that wraps the keyring's keys (envelope mode, a KMS stand-in)."""
    api_keys: Path | None = None
    """File listing `{name, sha256, roles}` for API keys."""
    auth: Literal["on", "off"] | None = None
    """`off` runs without authentication; with neither this nor api_keys, serve refuses."""
    trusted_keys: list[Path] = Field(default_factory=list)
    """Ed25519 public keys (PEM); when set, unsigned or badly signed versions are refused."""
    preload_aliases: list[str] = Field(default_factory=lambda: ["production", "canary"])
    """Aliases whose versions are loaded at start-up so the first request is not slow."""
    freeze_loaded_models: bool = True
    """Move loaded models (and all else alive after start-up) out of the garbage collector's
    scans (service/heap.py). Off only where models load by the hundred: the test suite."""
    log_level: str = "INFO"
    """Python logging level name."""
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    audit: AuditSettings = Field(default_factory=AuditSettings)
    explain: ExplainSettings = Field(default_factory=ExplainSettings)
    counterfactuals: CounterfactualSettings = Field(default_factory=CounterfactualSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)
    explain_mode: Literal["inline", "queue"] = "inline"
    """`queue`: sampled records become jobs for `whylens worker` instead of explained inline."""
    log_format: Literal["text", "json"] = "text"
    """`json`: one JSON object per log line, with request_id and traceparent fields."""
    queue: QueueSettings = Field(default_factory=QueueSettings)
    spool: SpoolSettings = Field(default_factory=SpoolSettings)
    archive: ArchiveSettings = Field(default_factory=ArchiveSettings)
    incidents: IncidentSettings = Field(default_factory=IncidentSettings)
    outbox: OutboxSettings = Field(default_factory=OutboxSettings)
    servicenow: ServiceNowSettings = Field(default_factory=ServiceNowSettings)
    webhook: WebhookSettings = Field(default_factory=WebhookSettings)

    @property
    def artifacts_uri(self) -> str:
        """The artifact store URI, defaulting to a folder in data_dir."""
        return self.artifacts or (self.data_dir / "artifacts").resolve().as_uri()

    @property
    def traces_url(self) -> str:
        """The trace store URL, defaulting to SQLite in data_dir."""
        return self.traces or f"sqlite:///{(self.data_dir / 'traces.db').resolve()}"
