"""Prometheus metrics of one app instance (own registry: no process-global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """Counters and histograms the service updates; rendered at /metrics."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.records = Counter(
            "whylens_records_total", "Prediction records received, by model and outcome",
            ["model", "status"], registry=self.registry)
        self.sampling = Counter(
            "whylens_sampling_decisions_total", "Sampling decisions by model and reason",
            ["model", "reason"], registry=self.registry)
        self.explanations = Counter(
            "whylens_explanations_total", "Explanations computed, by method",
            ["method"], registry=self.registry)
        self.explain_seconds = Histogram(
            "whylens_explain_seconds", "Time to explain one batch of rows, by method",
            ["method"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.explain_failures = Counter(
            "whylens_explain_failures_total", "Sampled records whose explanation failed",
            ["model"], registry=self.registry)
        self.store_errors = Counter(
            "whylens_store_errors_total", "Failed calls to a backing store",
            ["backend"], registry=self.registry)
        self.models_loaded = Gauge(
            "whylens_models_loaded", "Model versions held in memory", registry=self.registry)
        self.unmask_reads = Counter(
            "whylens_unmask_reads_total", "Audited reads of unmasked traces",
            registry=self.registry)
        self.audit_events = Counter(
            "whylens_audit_events_total", "Entries appended to the audit log, by action",
            ["action"], registry=self.registry)
        self.audit_failures = Counter(
            "whylens_audit_failures_total",
            "Admin calls whose audit entry could not be written (the call had happened)",
            registry=self.registry)

    def render(self) -> bytes:
        """Return the text exposition format."""
        return generate_latest(self.registry)
