from __future__ import annotations

import json

from storage.manifest import (
    Baseline,
    CategoricalBaseline,
    FeatureManifest,
    FileEntry,
    Manifest,
    NumericBaseline,
    ScoreBaseline,
)
from storage.masked_manifest import masked_manifest_json
from storage.masking import REDACTED, Masker

KEY = b"k" * 32
ZIPS = ["94110", "10473", "60601"]


def _manifest() -> Manifest:
    return Manifest(
        name="credit", version="1", flavor="lightgbm", task="binary",
        created_at="2026-11-25T00:00:00Z", training_data_snapshot="s", classes=[0, 1],
        features=[
            FeatureManifest(name="zip_code", type="categorical", mask="hash", categories=ZIPS),
            FeatureManifest(name="ssn", type="categorical", mask="redact",
                            categories=["123-45-6789", "987-65-4321"]),
            FeatureManifest(name="balance", mask="hash", min=1234.5, max=98765.25),
            FeatureManifest(name="income", mask="bucket", min=10000, max=200000),
            FeatureManifest(name="purpose", type="categorical", mask="bucket",
                            categories=["car", "home", "yacht"]),
            FeatureManifest(name="region", type="categorical", categories=["north", "south"]),
        ],
        baseline=Baseline(
            rows=100,
            features={
                "zip_code": CategoricalBaseline(frequencies={"94110": 0.6, "10473": 0.3},
                                                other=0.1, missing_rate=0),
                "ssn": CategoricalBaseline(frequencies={"123-45-6789": 0.5,
                                                        "987-65-4321": 0.5}, missing_rate=0),
                "balance": NumericBaseline(edges=[1234.5, 5000.75, 98765.25],
                                           proportions=[0.5, 0.5], mean=4321.5, std=99.5,
                                           min=1234.5, max=98765.25, missing_rate=0),
                "income": NumericBaseline(edges=[10000, 50000, 200000], proportions=[0.5, 0.5],
                                          mean=5e4, std=1e4, min=1e4, max=2e5, missing_rate=0),
                "purpose": CategoricalBaseline(frequencies={"car": 0.7, "home": 0.3},
                                               missing_rate=0),
            },
            score=ScoreBaseline(edges=[0, 1], proportions=[1]),
        ),
        files={"model": FileEntry(path="model.txt", sha256="0" * 64, size=1)},
    )


def test_hashed_training_values_read_as_the_pseudonyms_traces_show() -> None:
    manifest = _manifest()
    masker = Masker(manifest, hmac_key=KEY)
    served = masked_manifest_json(manifest, masker)
    text = json.dumps(served)
    for raw in [*ZIPS, "123-45-6789", "987-65-4321", "1234.5", "5000.75", "98765.25",
                "4321.5", "yacht"]:
        assert raw not in text, raw
    zip_code = served["features"][0]
    assert zip_code["categories"] == [masker.mask_value("zip_code", z) for z in ZIPS]
    assert served["baseline"]["features"]["zip_code"]["frequencies"] == {
        masker.mask_value("zip_code", "94110"): 0.6, masker.mask_value("zip_code", "10473"): 0.3}
    balance = served["baseline"]["features"]["balance"]
    assert balance["edges"] == [masker.mask_value("balance", v) for v in (1234.5, 5000.75,
                                                                         98765.25)]
    assert (balance["mean"], balance["std"], balance["proportions"]) == (None, None, [0.5, 0.5])
    assert served["masked_features"] == ["balance", "income", "purpose", "ssn", "zip_code"]


def test_redacted_values_collapse_and_bucket_definitions_stay() -> None:
    manifest = _manifest()
    served = masked_manifest_json(manifest, Masker(manifest, hmac_key=KEY))
    features = {f["name"]: f for f in served["features"]}
    assert features["ssn"]["categories"] == [REDACTED]
    assert served["baseline"]["features"]["ssn"]["frequencies"] == {REDACTED: 1.0}
    # Bucket: edges and frequent categories are what masked values are shown as; a rare
    # category is `other`, as in a trace.
    assert features["purpose"]["categories"] == ["car", "home", "other"]
    assert (features["income"]["min"], features["income"]["max"]) == (10000, 200000)
    income = served["baseline"]["features"]["income"]
    assert income["edges"] == [10000, 50000, 200000] and income["mean"] == 5e4
    # Unmasked features are served as published.
    assert features["region"]["categories"] == ["north", "south"]
    assert served["baseline"]["score"] == manifest.baseline.score.model_dump(mode="json")


def test_bucket_feature_without_baseline_bins_is_served_redacted_like_its_traces() -> None:
    base = _manifest()
    features = [*base.features, FeatureManifest(name="salary", mask="bucket", min=31337.5,
                                                max=271828.5),
                FeatureManifest(name="bonus", mask="bucket", min=4242.5, max=9191.5)]
    baselines = {**base.baseline.features,
                 "bonus": NumericBaseline(edges=[4242.5], proportions=[], mean=5555.5,
                                          std=1.5, min=4242.5, max=9191.5, missing_rate=0)}
    manifest = base.model_copy(update={
        "features": features,
        "baseline": base.baseline.model_copy(update={"features": baselines})})
    masker = Masker(manifest, hmac_key=KEY)
    assert masker.mask_value("salary", 50000.0) == REDACTED  # what a trace shows

    served = masked_manifest_json(manifest, masker)
    text = json.dumps(served)
    for raw in ("31337.5", "271828.5", "4242.5", "9191.5", "5555.5"):
        assert raw not in text, raw
    by_name = {f["name"]: f for f in served["features"]}
    assert (by_name["salary"]["min"], by_name["salary"]["max"]) == (REDACTED, REDACTED)
    assert by_name["bonus"]["min"] == REDACTED
    # A bucket feature with bins keeps its bucket definition.
    assert (by_name["income"]["min"], by_name["income"]["max"]) == (10000, 200000)
