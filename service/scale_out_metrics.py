"""Prometheus metrics of the job queue, the outage spool and the archive.

Registered on the app's (or worker's) own registry beside `service.metrics.Metrics`.
Queue gauges carry a `stream` label: `explain` (jobs) or `archive` (the archive feed).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from storage.queue.stream import QueueStats


class ScaleOutMetrics:
    """Counters and gauges of workers, spool and archive."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(name, doc, list(labels), registry=registry)

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(name, doc, list(labels), registry=registry)

        stream = ("stream",)
        self.queue_length = gauge("whylens_queue_length", "Entries in the stream", stream)
        self.queue_lag = gauge("whylens_queue_lag", "Entries not yet delivered to a consumer",
                               stream)
        self.queue_lag_seconds = gauge(
            "whylens_queue_lag_seconds", "Age of the oldest entry not yet delivered", stream)
        self.queue_pending = gauge(
            "whylens_queue_pending", "Entries delivered and not yet acknowledged", stream)
        self.queue_pending_seconds = gauge(
            "whylens_queue_oldest_pending_seconds",
            "Age of the oldest delivered, unacknowledged entry", stream)
        self.queue_dead_letters = gauge(
            "whylens_queue_dead_letters", "Entries in the dead-letter stream", stream)
        self.queue_consumers = gauge("whylens_queue_consumers", "Consumers of the group", stream)
        self.jobs_enqueued = counter("whylens_jobs_enqueued_total",
                                     "Explanation jobs put on the stream by this process")
        self.queue_overflow = counter(
            "whylens_queue_overflow_total",
            "Sampled records explained inline because the job backlog was above high water")
        self.jobs = counter("whylens_jobs_total",
                            "Jobs handled by this worker, by outcome (explained, skipped, "
                            "retried, dead_lettered)", ("outcome",))
        self.jobs_reclaimed = counter("whylens_jobs_reclaimed_total",
                                      "Entries taken over from idle consumers", stream)
        self.jobs_vanished = counter(
            "whylens_jobs_vanished_total",
            "Pending entries trimmed from the stream before being acknowledged", stream)
        self.spool_records = gauge("whylens_spool_records", "Records in the outage spool")
        self.spool_bytes = gauge("whylens_spool_bytes", "Bytes in the outage spool")
        self.spool_appended = counter("whylens_spool_appended_total",
                                      "Records written to the outage spool")
        self.spool_replayed = counter("whylens_spool_replayed_total",
                                      "Spooled records replayed into the store")
        self.spool_refused = counter("whylens_spool_refused_total",
                                     "Records refused with 503 because the spool was full")
        self.archive_lines = counter("whylens_archive_lines_total",
                                     "Traces and records written to the archive", ("kind",))
        self.archive_objects = counter("whylens_archive_objects_total",
                                       "Archive objects written")
        self.archive_retries = counter("whylens_archive_retries_total",
                                       "Failed archive writes that were retried")
        self.archive_missing = counter(
            "whylens_archive_missing_total",
            "Feed entries whose trace or record was gone from the store", ("kind",))
        self.archive_reads = counter("whylens_archive_reads_total",
                                     "Trace reads served from the archive", ("outcome",))
        self.archive_unsent = gauge("whylens_archive_feed_unsent",
                                    "Archive feed entries held in memory (feed unreachable)")
        self.archive_purged = counter("whylens_archive_purged_objects_total",
                                      "Archive objects deleted past their retention", ("kind",))
        self.archive_held = gauge("whylens_archive_held_partitions",
                                  "Archive partitions past retention kept for an incident hold")

    def observe_stream(self, stream: str, stats: QueueStats) -> None:
        """Set the gauges of one stream from its statistics."""
        self.queue_length.labels(stream).set(stats.length)
        self.queue_lag.labels(stream).set(float("nan") if stats.lag is None else stats.lag)
        self.queue_lag_seconds.labels(stream).set(stats.oldest_undelivered_age_s)
        self.queue_pending.labels(stream).set(stats.pending)
        self.queue_pending_seconds.labels(stream).set(stats.oldest_pending_age_s)
        self.queue_dead_letters.labels(stream).set(stats.dead_letters)
        self.queue_consumers.labels(stream).set(stats.consumers)
