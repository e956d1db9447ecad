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


class Baseline(_Strict):
    """Profile of the training data that live windows are compared with."""

    rows: int
    features: dict[str, FeatureBaseline]
    score: ScoreBaseline


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
