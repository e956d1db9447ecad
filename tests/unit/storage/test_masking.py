from __future__ import annotations

import pytest

from storage.manifest import (
    Baseline,
    CategoricalBaseline,
    FeatureManifest,
    FileEntry,
    Manifest,
    NumericBaseline,
    ScoreBaseline,
)
from storage.masking import REDACTED, Masker

KEY = b"k" * 32


def _manifest() -> Manifest:
    return Manifest(
        name="credit", version="1", flavor="lightgbm", task="binary",
        created_at="2026-11-25T00:00:00Z", training_data_snapshot="s", classes=[0, 1],
        features=[
            FeatureManifest(name="zip_code", type="categorical", mask="hash"),
            FeatureManifest(name="income", mask="bucket"),
            FeatureManifest(name="ssn", type="categorical", mask="redact"),
            FeatureManifest(name="purpose", type="categorical", mask="bucket"),
            FeatureManifest(name="age"),
        ],
        baseline=Baseline(
            rows=100,
            features={
                "income": NumericBaseline(edges=[10000, 50000, 60000, 200000],
                                          proportions=[0.5, 0.2, 0.3], mean=5e4, std=1e4,
                                          min=1e4, max=2e5, missing_rate=0),
                "purpose": CategoricalBaseline(frequencies={"car": 0.7, "home": 0.3},
                                               missing_rate=0),
            },
            score=ScoreBaseline(edges=[0, 1], proportions=[1]),
        ),
        files={"model": FileEntry(path="model.txt", sha256="0" * 64, size=1)},
    )


def test_masked_features_never_keep_raw_values() -> None:
    masker = Masker(_manifest(), hmac_key=KEY)
    raw = {"zip_code": "94110", "income": 52000.0, "ssn": "123-45-6789", "purpose": "car",
           "age": 41}
    masked = masker.mask_features(raw)
    assert masked["zip_code"].startswith("h:") and len(masked["zip_code"]) == 18
    assert masked["income"] == "50000–60000"
    assert masked["ssn"] == REDACTED
    assert masked["purpose"] == "car"
    assert masked["age"] == 41
    assert "94110" not in str(masked) and "52000" not in str(masked)
    assert raw["zip_code"] == "94110"  # input untouched


def test_pseudonyms_are_stable_and_keyed() -> None:
    a = Masker(_manifest(), hmac_key=KEY)
    b = Masker(_manifest(), hmac_key=b"o" * 32)
    assert a.mask_value("zip_code", "94110") == a.mask_value("zip_code", "94110")
    assert a.mask_value("zip_code", "94110") != a.mask_value("zip_code", "94111")
    assert a.mask_value("zip_code", "94110") != b.mask_value("zip_code", "94110")


@pytest.mark.parametrize(
    ("value", "bucket"),
    [(9000, "<10000"), (10000, "10000–50000"), (55000.5, "50000–60000"), (200000, "60000–200000"),
     (250000, ">200000"), (None, None), ("text", REDACTED)],
)
def test_bucket_labels_cover_edges_and_outliers(value: object, bucket: object) -> None:
    assert Masker(_manifest(), hmac_key=KEY).mask_value("income", value) == bucket


def test_rare_categories_are_pooled_as_other() -> None:
    assert Masker(_manifest(), hmac_key=KEY).mask_value("purpose", "yacht") == "other"
