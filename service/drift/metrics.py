"""The drift series of /metrics (gauges refreshed by `gauges.py`, error counters)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class DriftMetrics:
    """The drift series of /metrics, registered on the app's own registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        version = ["model", "version"]
        feature = [*version, "feature"]
        self.level = Gauge("whylens_drift_level", "Feature drift status over the trailing "
                           "window: -1 insufficient_data, 0 ok, 1 warn, 2 drift", feature,
                           registry=registry)
        self.psi = Gauge("whylens_drift_psi", "Feature PSI against training", feature,
                         registry=registry)
        self.wasserstein = Gauge("whylens_drift_wasserstein_norm", "Feature Wasserstein-1 / "
                                 "training std", feature, registry=registry)
        self.prediction_level = Gauge("whylens_prediction_drift_level", "Score drift status "
                                      "(-1..2)", version, registry=registry)
        self.prediction_psi = Gauge("whylens_prediction_drift_psi", "Score PSI against "
                                    "training", version, registry=registry)
        self.label_level = Gauge("whylens_label_drift_level", "Label rate and calibration "
                                 "status (-1..2)", version, registry=registry)
        self.calibration = Gauge("whylens_calibration_error", "Expected calibration error "
                                 "of labelled decisions", version, registry=registry)
        self.records = Gauge("whylens_drift_window_records", "Records in the trailing "
                             "window", version, registry=registry)
        self.refreshed = Gauge("whylens_drift_refresh_timestamp_seconds", "When the drift "
                               "gauges were last recomputed", registry=registry)
        self.window_errors = Counter("whylens_drift_window_errors_total", "Drift window "
                                     "writes (batches of ingested records) that failed",
                                     registry=registry)
        self.context_errors = Counter("whylens_drift_context_errors_total", "Trace reads "
                                      "served without drift context", registry=registry)

    def clear(self) -> None:
        """Drop every labelled series (versions no longer aliased disappear)."""
        for gauge in (self.level, self.psi, self.wasserstein, self.prediction_level,
                      self.prediction_psi, self.label_level, self.calibration, self.records):
            gauge.clear()
