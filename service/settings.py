"""The one settings object (environment prefix WHYLENS_); defaults give the embedded mode."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SamplingSettings(BaseModel):
    """Default sampling policy, used for models without a published policy."""

    rate: float = Field(default=0.05, ge=0.0, le=1.0)
    """Share of ordinary records explained, chosen by a stable hash of the request ID."""
    near_threshold: float = Field(default=0.0, ge=0.0, le=1.0)
    """Explain every binary decision whose score is this close to its threshold (0: off)."""
    always_cohorts: list[str] = Field(default_factory=lambda: ["canary"])
    """Cohorts (`context.cohort`) whose records are always explained."""


class RetentionSettings(BaseModel):
    """How long each kind of data lives in the trace store."""

    traces_s: int = Field(default=30 * 86400, gt=0)
    """Masked traces."""
    records_s: int = Field(default=7 * 86400, gt=0)
    """Compact prediction log and sealed raw inputs (needed for on-demand explanations)."""
    purge_interval_s: int = Field(default=3600, gt=0)
    """How often the embedded store deletes expired rows."""


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
    api_keys: Path | None = None
    """File listing `{name, sha256, roles}` for API keys."""
    auth: Literal["on", "off"] | None = None
    """`off` runs without authentication; with neither this nor api_keys, serve refuses."""
    trusted_keys: list[Path] = Field(default_factory=list)
    """Ed25519 public keys (PEM); when set, unsigned or badly signed versions are refused."""
    preload_aliases: list[str] = Field(default_factory=lambda: ["production", "canary"])
    """Aliases whose versions are loaded at start-up so the first request is not slow."""
    log_level: str = "INFO"
    """Python logging level name."""
    sampling: SamplingSettings = Field(default_factory=SamplingSettings)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    explain: ExplainSettings = Field(default_factory=ExplainSettings)

    @property
    def artifacts_uri(self) -> str:
        """The artifact store URI, defaulting to a folder in data_dir."""
        return self.artifacts or (self.data_dir / "artifacts").resolve().as_uri()

    @property
    def traces_url(self) -> str:
        """The trace store URL, defaulting to SQLite in data_dir."""
        return self.traces or f"sqlite:///{(self.data_dir / 'traces.db').resolve()}"
