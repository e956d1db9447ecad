"""The manifest as served: raw training values of masked features in their masked form.

A manifest lists training values (categories, baseline category keys, quantile edges,
extremes) that for a masked feature are as sensitive as the live values traces mask.
Each is passed through the feature's `Masker` rule, so it reads exactly as in a trace:
`hash` gives the same pseudonyms, `redact` collapses everything into `[redacted]`, and
`bucket` keeps what defines the buckets (edges, frequent categories) while rare
categories become `other`. Moments (mean, std) of `hash` and `redact` features are
withheld; proportions stay, since they are shares of bins, not values.
"""

from __future__ import annotations

from typing import Any

from storage.manifest import Manifest
from storage.masking import Masker

_NUMERIC_VALUES = ("min", "max")
_NUMERIC_LISTS = ("edges", "fine_edges")
_MOMENTS = ("mean", "std")


def masked_manifest_json(manifest: Manifest, masker: Masker) -> dict[str, Any]:
    """Return the manifest as JSON with every masked feature's raw values masked."""
    document = manifest.model_dump(mode="json")
    masked = masker.masked_features
    # The rule the masker really applies, not the declared one: a `bucket` feature with no
    # baseline bins is masked as `redact` in traces, so its extremes must be too.
    modes = {f.name: masker.mode_of(f.name) for f in manifest.features}
    for feature in document["features"]:
        name = feature["name"]
        if name not in masked:
            continue
        if feature.get("categories") is not None:
            feature["categories"] = _masked_list(masker, name, feature["categories"])
        if modes[name] != "bucket":
            for key in _NUMERIC_VALUES:
                feature[key] = _masked(masker, name, feature.get(key))
    baselines = document["baseline"]["features"]
    for name in sorted(masked & set(baselines)):
        _mask_baseline(masker, name, baselines[name], bucket=modes.get(name) == "bucket")
    document["masked_features"] = sorted(masked)
    return document


def _mask_baseline(masker: Masker, name: str, baseline: dict[str, Any], *,
                   bucket: bool) -> None:
    if baseline.get("kind") == "categorical":
        frequencies: dict[str, float] = {}
        for value, share in baseline["frequencies"].items():
            key = str(masker.mask_value(name, value))
            # `redact` (and `bucket`'s `other`) map several values to one key: add them up.
            frequencies[key] = frequencies.get(key, 0.0) + share
        baseline["frequencies"] = frequencies
        return
    if bucket:
        # Edges are the bucket definition that masked values are shown in.
        return
    for key in _NUMERIC_LISTS:
        if baseline.get(key) is not None:
            baseline[key] = [masker.mask_value(name, v) for v in baseline[key]]
    for key in _NUMERIC_VALUES:
        baseline[key] = _masked(masker, name, baseline.get(key))
    for key in _MOMENTS:
        baseline[key] = None


def _masked(masker: Masker, name: str, value: object) -> object:
    return None if value is None else masker.mask_value(name, value)


def _masked_list(masker: Masker, name: str, values: list[object]) -> list[object]:
    # Masked values can coincide (`redact`, `other`); list each once, in order.
    return list(dict.fromkeys(masker.mask_value(name, v) for v in values))
