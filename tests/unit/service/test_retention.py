from __future__ import annotations

from pathlib import Path

import pytest

from service.errors import RecordInvalid
from service.retention import Retention, read_retention_overrides, retention_for
from service.settings import RetentionSettings
from storage.manifest import Manifest, RetentionOverrides


def manifest(retention: RetentionOverrides | None) -> Manifest:
    return Manifest.model_validate({
        "name": "credit", "version": "1", "flavor": "lightgbm", "task": "binary",
        "created_at": "2026-01-01T00:00:00Z", "training_data_snapshot": "t",
        "features": [{"name": "x"}], "files": {},
        "baseline": {"rows": 1, "features": {}, "score": {"edges": [0, 1],
                                                          "proportions": [1.0]}},
        "retention": None if retention is None else retention.model_dump(),
    })


def test_settings_per_model_win_over_the_manifest_which_wins_over_defaults() -> None:
    settings = RetentionSettings(traces_s=1000, records_s=500, models={
        "credit": RetentionOverrides(records_s=50)})
    resolved = retention_for(settings, manifest(RetentionOverrides(traces_s=70, records_s=60)))
    assert resolved == Retention(traces_s=70, records_s=50, inputs_s=50,
                                 incident_traces_s=settings.incident_traces_s,
                                 archive_traces_s=400 * 86400, archive_records_s=400 * 86400)
    assert retention_for(RetentionSettings(traces_s=1000, records_s=500),
                         manifest(None)) == Retention(1000, 500, 500, 90 * 86400,
                                                      400 * 86400, 400 * 86400)


def test_archive_retention_resolves_per_field_with_the_same_precedence() -> None:
    settings = RetentionSettings(archive_traces_s=3000, archive_records_s=2000, models={
        "credit": RetentionOverrides(archive_records_s=20)})
    resolved = retention_for(settings, manifest(RetentionOverrides(archive_traces_s=30,
                                                                   archive_records_s=40)))
    assert (resolved.archive_traces_s, resolved.archive_records_s) == (30, 20)
    other = retention_for(settings, None, model="other")
    assert (other.archive_traces_s, other.archive_records_s) == (3000, 2000)


def test_incident_retention_resolves_per_model_without_a_manifest() -> None:
    settings = RetentionSettings(incident_traces_s=7200, models={
        "credit": RetentionOverrides(incident_traces_s=60)})
    assert retention_for(settings, None, model="credit").incident_traces_s == 60
    assert retention_for(settings, None, model="other").incident_traces_s == 7200
    from_manifest = retention_for(settings, manifest(RetentionOverrides(incident_traces_s=90)),
                                  model="credit")
    assert from_manifest.incident_traces_s == 60


def test_sealed_inputs_never_outlive_their_log_entry() -> None:
    settings = RetentionSettings(records_s=100, inputs_s=1000)
    assert retention_for(settings, manifest(None)).inputs_s == 100
    shorter = retention_for(settings, manifest(RetentionOverrides(inputs_s=10)))
    assert shorter.inputs_s == 10


def test_features_yaml_retention_section_is_read_and_checked(tmp_path: Path) -> None:
    path = tmp_path / "FEATURES.yaml"
    path.write_text("features: []\nretention: {traces_s: 86400, inputs_s: 3600}\n")
    assert read_retention_overrides(path) == RetentionOverrides(traces_s=86400, inputs_s=3600)
    path.write_text("retention: {traces_s: -1}\n")
    with pytest.raises(RecordInvalid) as caught:
        read_retention_overrides(path)
    assert caught.value.errors[0].field == "retention.traces_s"
    path.write_text("features: []\n")
    assert read_retention_overrides(path) is None
