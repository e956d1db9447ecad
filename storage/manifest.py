"""The manifest of a published model version: identity, feature contract, baseline, digests."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

Flavor = Literal["lightgbm", "sklearn"]
TaskName = Literal["binary", "regression", "multiclass"]
MaskMode = Literal["none", "hash", "bucket", "redact"]
Direction = Literal["any", "increase", "decrease"]
CategoryValue = str | int | float


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FeatureManifest(_Strict):
    """One input feature of the model, in model column order."""

    name: str
    type: Literal["numeric", "categorical"] = "numeric"
    mask: MaskMode = "none"
    immutable: bool = False
    min: float | None = None
    max: float | None = None
    categories: list[CategoryValue] | None = None
    nullable: bool = True
    """Whether an explicit null (missing value) is accepted for this feature."""
    direction: Direction = "any"
    """Counterfactual search may move this feature only this way."""
    cost: float = 1.0
    """Relative cost of changing this feature in counterfactual search."""


class NumericBaseline(_Strict):
    """Training distribution of a numeric feature."""

    kind: Literal["numeric"] = "numeric"
    edges: list[float]
    """Quantile bin edges, ascending, first = training min, last = training max."""
    proportions: list[float]
    """Share of non-missing training rows per bin (len(edges) - 1 values)."""
    mean: float
    std: float
    min: float
    max: float
    missing_rate: float
    fine_edges: list[float] | None = None
    """Finer quantile edges (a superset of `edges`) that live drift windows count on."""
    fine_proportions: list[float] | None = None
    """Share of non-missing training rows per fine bin."""


class CategoricalBaseline(_Strict):
    """Training distribution of a categorical feature (top-K categories plus other)."""

    kind: Literal["categorical"] = "categorical"
    frequencies: dict[str, float]
    other: float = 0.0
    missing_rate: float


FeatureBaseline = Annotated[NumericBaseline | CategoricalBaseline, Field(discriminator="kind")]


class ScoreBaseline(_Strict):
    """Training distribution of the model score (probability or predicted value)."""

    edges: list[float]
    proportions: list[float]
    fine_edges: list[float] | None = None
    """Finer edges (a superset of `edges`) that live drift windows count scores on."""
    fine_proportions: list[float] | None = None
    mean: float | None = None
    std: float | None = None


class Baseline(_Strict):
    """Profile of the training data that live windows are compared with."""

    rows: int
    features: dict[str, FeatureBaseline]
    score: ScoreBaseline
    label_rate: float | None = None
    """Share of positive labels in the training data (binary models published with --label)."""


class DriftOverrides(_Strict):
    """Per-model changes to the drift status thresholds (unset fields keep the default)."""

    psi_warn: float | None = Field(default=None, ge=0)
    psi_drift: float | None = Field(default=None, ge=0)
    wasserstein_warn: float | None = Field(default=None, ge=0)
    wasserstein_drift: float | None = Field(default=None, ge=0)
    missing_warn: float | None = Field(default=None, ge=0, le=1)
    missing_drift: float | None = Field(default=None, ge=0, le=1)
    out_of_range_warn: float | None = Field(default=None, ge=0, le=1)
    out_of_range_drift: float | None = Field(default=None, ge=0, le=1)
    label_rate_warn: float | None = Field(default=None, ge=0, le=1)
    label_rate_drift: float | None = Field(default=None, ge=0, le=1)
    ece_warn: float | None = Field(default=None, ge=0, le=1)
    ece_drift: float | None = Field(default=None, ge=0, le=1)
    alpha: float | None = Field(default=None, gt=0, le=1)
    min_count: int | None = Field(default=None, ge=1)
    min_labels: int | None = Field(default=None, ge=1)
    stale_after_s: float | None = Field(default=None, gt=0)


class RetentionOverrides(_Strict):
    """How long this model's data is kept (unset fields keep the service's settings)."""

    traces_s: int | None = Field(default=None, gt=0)
    """Masked traces."""
    records_s: int | None = Field(default=None, gt=0)
    """The compact prediction log."""
    inputs_s: int | None = Field(default=None, gt=0)
    """Sealed raw inputs (never longer than the prediction log they belong to)."""
    incident_traces_s: int | None = Field(default=None, gt=0)
    """Traces linked to an incident of this model, counted from the incident's close."""
    archive_traces_s: int | None = Field(default=None, gt=0)
    """Archived traces, per `dt=` day partition counted from the end of its day."""
    archive_records_s: int | None = Field(default=None, gt=0)
    """Archived prediction-log entries, per `dt=` day partition."""


class FileEntry(_Strict):
    """A file of the version, relative to the version folder, with its digest."""

    path: str
    sha256: str
    size: int


class Manifest(_Strict):
    """Identity and contract of one model version (`models/<name>/<version>/manifest.json`)."""

    name: str
    version: str
    flavor: Flavor
    task: TaskName
    created_at: str
    owner: str = "unknown"
    criticality: Literal["low", "medium", "high", "critical"] = "medium"
    training_data_snapshot: str
    feature_schema_version: str = "1"
    rollback_to: str | None = None
    classes: list[CategoryValue] = Field(default_factory=list)
    """Class labels in model order (classification only)."""
    features: list[FeatureManifest]
    baseline: Baseline
    files: dict[str, FileEntry]
    """Roles: `model` (model.txt or model.skops) and `background` (background.parquet)."""
    drift: DriftOverrides | None = None
    """Drift thresholds of this version (the `drift:` section of FEATURES.yaml)."""
    retention: RetentionOverrides | None = None
    """Retention of this version's data (the `retention:` section of FEATURES.yaml)."""
    constraints: list[str] = Field(default_factory=list)
    """Cross-feature counterfactual constraints such as `debt <= credit_limit` (the
    `constraints:` list of FEATURES.yaml)."""

    def feature(self, name: str) -> FeatureManifest | None:
        """Return the feature named `name`, or None."""
        for f in self.features:
            if f.name == name:
                return f
        return None


class Aliases(_Strict):
    """`models/<name>/aliases.json`: alias name → version."""

    aliases: dict[str, str] = Field(default_factory=dict)
    updated_at: str | None = None
