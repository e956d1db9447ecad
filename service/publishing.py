"""`whylens publish` / `promote`: build a manifest from a model file and its training data."""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from pydantic import ValidationError

from explainers.counterfactual_types import parse_relation
from explainers.drift_stats import FINE_BINS_PER_BIN, profile_categorical, profile_numeric
from explainers.encoding import encode_frame
from explainers.lightgbm_model import infer_lightgbm_schema
from explainers.registry import build_explainable
from explainers.sklearn_schema import infer_sklearn_schema
from explainers.types import FeatureKind, ModelSchema, Task
from service.errors import FieldError, RecordInvalid
from service.retention import read_retention_overrides
from service.settings import Settings
from storage.artifact_factory import open_artifact_store
from storage.catalog import ModelCatalog
from storage.formats import parse_lightgbm, parse_skops, serialize_background
from storage.manifest import (
    Baseline,
    CategoricalBaseline,
    DriftOverrides,
    FeatureManifest,
    NumericBaseline,
    ScoreBaseline,
)

BACKGROUND_ROWS = 200
SCORE_SAMPLE_ROWS = 20000
_OVERRIDABLE = {"type", "mask", "immutable", "min", "max", "categories", "nullable",
                "direction", "cost"}


@dataclass(frozen=True, slots=True)
class PublishRequest:
    """Arguments of `whylens publish`."""

    name: str
    version: str
    model_path: Path
    train_path: Path
    label: str | None = None
    features_path: Path | None = None
    signing_key_path: Path | None = None
    owner: str = "unknown"
    criticality: str = "medium"
    rollback_to: str | None = None
    bins: int = 10


def read_training_data(path: Path) -> pd.DataFrame:
    """Read CSV or Parquet training data."""
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pd.read_parquet(path)
    if suffix == ".csv":
        return pd.read_csv(path)
    raise RecordInvalid([FieldError("--train", "expected a .csv or .parquet file")])


def read_feature_overrides(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read FEATURES.yaml: `features:` then a list of entries with manifest fields."""
    if path is None:
        return {}
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = doc.get("features") if isinstance(doc, dict) else None
    if not isinstance(entries, list):
        raise RecordInvalid([FieldError("--features", "expected `features:` and a list")])
    overrides: dict[str, dict[str, Any]] = {}
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise RecordInvalid([FieldError(f"features[{index}]", "needs a name")])
        unknown = set(entry) - _OVERRIDABLE - {"name"}
        if unknown:
            raise RecordInvalid([FieldError(f"features[{index}].{sorted(unknown)[0]}",
                                            "not a manifest feature field")])
        overrides[entry["name"]] = {k: v for k, v in entry.items() if k != "name"}
    return overrides


def read_constraints(path: Path | None, schema: ModelSchema) -> list[str]:
    """Read FEATURES.yaml's `constraints:` list (`debt <= credit_limit`, numeric features)."""
    if path is None:
        return []
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = doc.get("constraints", []) if isinstance(doc, dict) else []
    if not isinstance(entries, list):
        raise RecordInvalid([FieldError("constraints", "expected a list")])
    numeric = {f.name for f in schema.features if f.kind is FeatureKind.NUMERIC}
    for index, entry in enumerate(entries):
        try:
            relation = parse_relation(entry if isinstance(entry, str) else "")
        except ValueError as exc:
            raise RecordInvalid([FieldError(f"constraints[{index}]", str(exc))]) from None
        if not {relation.left, relation.right} <= numeric or relation.left == relation.right:
            raise RecordInvalid([FieldError(f"constraints[{index}]",
                                            "needs two different numeric model inputs")])
    return list(entries)


def load_model_file(path: Path) -> tuple[str, object, bytes, str]:
    """Return (flavor, model object, file bytes, stored file name) of a model file."""
    data = path.read_bytes()
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return "lightgbm", parse_lightgbm(data, key=str(path)), data, "model.txt"
    if suffix == ".skops":
        return "sklearn", parse_skops(data, key=str(path)), data, "model.skops"
    raise RecordInvalid([FieldError("--model", "expected a LightGBM .txt or a .skops file "
                                               "(pickle and joblib are never loaded)")])


def _features(schema: ModelSchema, frame: pd.DataFrame, flavor: str,
              overrides: dict[str, dict[str, Any]]) -> list[FeatureManifest]:
    unknown = set(overrides) - set(schema.feature_names)
    if unknown:
        raise RecordInvalid([FieldError(f"features.{sorted(unknown)[0]}",
                                        "not an input of the model")])
    features = []
    for spec in schema.features:
        column = frame[spec.name]
        fields: dict[str, Any] = {"name": spec.name, "type": spec.kind.value,
                                  "nullable": flavor == "lightgbm" or bool(column.isna().any())}
        if spec.kind is FeatureKind.CATEGORICAL:
            fields["categories"] = list(spec.categories)
        else:
            numeric = pd.to_numeric(column, errors="coerce")
            fields["min"], fields["max"] = float(numeric.min()), float(numeric.max())
        fields.update(overrides.get(spec.name, {}))
        if fields["type"] != spec.kind.value:
            raise RecordInvalid([FieldError(f"features.{spec.name}.type",
                                            f"the model treats it as {spec.kind.value}")])
        features.append(FeatureManifest(**fields))
    return features


def _baseline(schema: ModelSchema, frame: pd.DataFrame, scores: np.ndarray,
              bins: int) -> Baseline:
    profiles: dict[str, NumericBaseline | CategoricalBaseline] = {}
    for spec in schema.features:
        column = frame[spec.name]
        if spec.kind is FeatureKind.CATEGORICAL:
            cat = profile_categorical(column.astype(object).where(column.notna(), None).tolist())
            profiles[spec.name] = CategoricalBaseline(frequencies=cat.frequencies,
                                                      other=cat.other,
                                                      missing_rate=cat.missing_rate)
        else:
            num = profile_numeric(pd.to_numeric(column, errors="coerce").to_numpy(float),
                                  bins=bins)
            profiles[spec.name] = NumericBaseline(
                edges=list(num.edges), proportions=list(num.proportions), mean=num.mean,
                std=num.std, min=num.min, max=num.max, missing_rate=num.missing_rate,
                fine_edges=list(num.fine_edges) or None,
                fine_proportions=list(num.fine_proportions) or None)
    return Baseline(rows=len(frame), features=profiles,
                    score=_score_baseline(schema.task, scores, bins))


def _score_baseline(task: Task, scores: np.ndarray, bins: int) -> ScoreBaseline:
    scores = np.asarray(scores, dtype=np.float64)
    mean = float(scores.mean()) if scores.size else None
    std = float(scores.std()) if scores.size else None
    if task is Task.REGRESSION:
        profile = profile_numeric(scores, bins=bins)
        return ScoreBaseline(edges=list(profile.edges), proportions=list(profile.proportions),
                             fine_edges=list(profile.fine_edges) or None,
                             fine_proportions=list(profile.fine_proportions) or None,
                             mean=mean, std=std)
    histograms = []
    for n_bins in (bins, bins * FINE_BINS_PER_BIN):
        edges = [float(e) for e in np.linspace(0.0, 1.0, n_bins + 1)]
        counts = np.histogram(scores, bins=edges)[0].astype(float)
        histograms.append((edges, [float(c) for c in counts / max(counts.sum(), 1.0)]))
    (edges, proportions), (fine_edges, fine_proportions) = histograms
    return ScoreBaseline(edges=edges, proportions=proportions, fine_edges=fine_edges,
                         fine_proportions=fine_proportions, mean=mean, std=std)


def label_rate(labels: pd.Series, classes: tuple[object, ...]) -> float | None:
    """Share of training rows whose label is the positive (second) class of a binary model."""
    present = labels.dropna()
    if len(classes) != 2 or present.empty:
        return None
    positive = _canonical(classes[1])
    return float(np.mean([_canonical(v) == positive for v in present.tolist()]))


def _canonical(value: object) -> str:
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def read_drift_overrides(path: Path | None) -> DriftOverrides | None:
    """Read the optional `drift:` section of FEATURES.yaml (per-version thresholds)."""
    if path is None:
        return None
    doc = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    section = doc.get("drift") if isinstance(doc, dict) else None
    if section is None:
        return None
    if not isinstance(section, dict):
        raise RecordInvalid([FieldError("drift", "expected a mapping of thresholds")])
    try:
        return DriftOverrides(**section)
    except ValidationError as exc:
        raise RecordInvalid([FieldError(f"drift.{'.'.join(str(p) for p in e['loc'])}",
                                        e["msg"]) for e in exc.errors()]) from exc


def build_publication(
    request: PublishRequest,
) -> tuple[dict[str, Any], dict[str, tuple[str, bytes]]]:
    """Compute manifest fields and files (CPU and local file I/O; run it in a thread)."""
    flavor, model_object, model_bytes, model_file = load_model_file(request.model_path)
    frame = read_training_data(request.train_path)
    labels = None
    if request.label and request.label in frame.columns:
        labels = frame[request.label]
        frame = frame.drop(columns=[request.label])
    if flavor == "lightgbm":
        schema = infer_lightgbm_schema(model_object, frame)  # type: ignore[arg-type]
    else:
        schema = infer_sklearn_schema(model_object, frame)
    missing = [n for n in schema.feature_names if n not in frame.columns]
    if missing:
        raise RecordInvalid([FieldError("--train", f"training data lacks model input "
                                                   f"{missing[0]!r}")])
    frame = frame[list(schema.feature_names)]
    features = _features(schema, frame, flavor, read_feature_overrides(request.features_path))
    sample = frame.sample(min(len(frame), SCORE_SAMPLE_ROWS), random_state=0)
    explainable = build_explainable(flavor, model_object, schema,
                                    background=encode_frame(sample.head(50), schema))
    scores = explainable.model.predict(encode_frame(sample, schema)).scores
    background = frame.sample(min(len(frame), BACKGROUND_ROWS), random_state=1)
    train_digest = hashlib.sha256(request.train_path.read_bytes()).hexdigest()
    fields: dict[str, Any] = {
        "name": request.name, "version": request.version, "flavor": flavor,
        "task": schema.task.value,
        "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "owner": request.owner, "criticality": request.criticality,
        "training_data_snapshot": f"{request.train_path.name}@sha256:{train_digest[:16]}",
        "rollback_to": request.rollback_to, "classes": list(schema.classes),
        "features": features, "baseline": _baseline(schema, frame, scores, request.bins),
        "files": {}, "drift": read_drift_overrides(request.features_path),
        "retention": read_retention_overrides(request.features_path),
        "constraints": read_constraints(request.features_path, schema),
    }
    if labels is not None and schema.task is Task.BINARY:
        baseline = fields["baseline"]
        assert isinstance(baseline, Baseline)
        fields["baseline"] = baseline.model_copy(
            update={"label_rate": label_rate(labels, tuple(schema.classes))})
    files = {"model": (model_file, model_bytes),
             "background": ("background.parquet", serialize_background(background))}
    return fields, files


async def publish_from_files(settings: Settings, request: PublishRequest) -> Any:
    """Build and publish a version to the configured artifact store."""
    fields, files = await asyncio.to_thread(build_publication, request)
    catalog = ModelCatalog(open_artifact_store(settings.artifacts_uri,
                                               s3_endpoint_url=settings.s3_endpoint_url))
    signing_key = request.signing_key_path.read_bytes() if request.signing_key_path else None
    return await catalog.publish(fields, files, signing_key_pem=signing_key)


async def promote(settings: Settings, name: str, version: str, alias: str) -> None:
    """Point an alias (production, canary, ...) at a published version."""
    catalog = ModelCatalog(open_artifact_store(settings.artifacts_uri,
                                               s3_endpoint_url=settings.s3_endpoint_url))
    await catalog.set_alias(name, alias, version)
