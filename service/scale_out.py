"""The scale-out parts of one process: job stream, outage spool, archive feed and reader.

Built once per process from the settings (`open_scale_out`) and kept on the runtime as
`runtime.scale_out`. Every part is optional: the embedded mode (SQLite, inline) has only
the spool, which touches the disk only during a store outage.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

import redis.asyncio
from prometheus_client import CollectorRegistry

from service.errors import StartupRefused
from service.scale_out_metrics import ScaleOutMetrics
from service.settings import Settings
from storage.archive.feed import FEED_STREAM, ArchiveFeedStore, TraceAndRecordStore
from storage.archive.index import RedisArchiveIndex
from storage.archive.writer import ArchiveReader
from storage.artifact_factory import open_artifact_store
from storage.artifacts.s3 import S3ArtifactStore
from storage.errors import StorageError
from storage.protocols import ArtifactStore
from storage.queue.stream import RedisStream, StreamKeys
from storage.redis_client import open_redis_client
from storage.spool.file import FileSpool

EXPLAIN_STREAM = "explain"
WORKER_GROUP = "workers"
ARCHIVER_GROUP = "archivers"
# Retries of one S3 call inside boto3 (three attempts in all) before the archiver's own
# backoff takes over.
ARCHIVE_S3_RETRIES = 2


@dataclass(slots=True)
class ScaleOut:
    """Job stream, spool and archive of one process (each None when not configured)."""

    metrics: ScaleOutMetrics
    store: TraceAndRecordStore
    """The store every trace and record write goes through (feeds the archive if enabled)."""
    queue_mode: bool
    max_backlog: int
    redis: redis.asyncio.Redis | None = None
    jobs: RedisStream | None = None
    spool: FileSpool | None = None
    feed: ArchiveFeedStore | None = None
    archive_feed: RedisStream | None = None
    archive_index: RedisArchiveIndex | None = None
    archive_store: ArtifactStore | None = None
    archive: ArchiveReader | None = None
    backlog: int = 0
    """Unfinished jobs at the last look (refreshed by the stats task)."""
    last_spool_warning: float = 0.0
    """Monotonic time of the last "spooling" warning (one per interval, not per request)."""

    async def close(self) -> None:
        """Release the spool and the queue's Redis client (the store is closed by its owner)."""
        if self.spool is not None:
            await self.spool.close()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                await self.redis.aclose()


def queue_redis_url(settings: Settings) -> str | None:
    """The Redis of the job stream and archive feed: configured, else the trace store's."""
    if settings.queue.redis_url:
        return settings.queue.redis_url
    url = settings.traces_url
    return url if urlsplit(url).scheme.lower() in ("redis", "rediss") else None


def open_archive_store(settings: Settings) -> ArtifactStore:
    """The archive's object store, with the archive's timeouts when it is S3."""
    uri = settings.archive.uri or settings.artifacts_uri
    parts = urlsplit(uri)
    if parts.scheme.lower() != "s3":
        return open_artifact_store(uri, s3_endpoint_url=settings.s3_endpoint_url)
    timeout = settings.archive.timeout_s
    return S3ArtifactStore(parts.netloc, unquote(parts.path), endpoint_url=settings.s3_endpoint_url,
                           max_attempts=ARCHIVE_S3_RETRIES, connect_timeout=timeout,
                           read_timeout=timeout)


def open_scale_out(settings: Settings, store: TraceAndRecordStore,
                   registry: CollectorRegistry) -> ScaleOut:
    """Build the scale-out parts the settings ask for; no I/O happens here.

    Raises:
        StartupRefused: queue mode or the archive without a Redis to hold jobs and feed.
    """
    metrics = ScaleOutMetrics(registry)
    queue = settings.queue
    url = queue_redis_url(settings)
    if url is None and (settings.explain_mode == "queue" or settings.archive.enabled):
        raise StartupRefused("WHYLENS_EXPLAIN_MODE=queue and WHYLENS_ARCHIVE__ENABLED need "
                             "Redis: set WHYLENS_TRACES=redis://... or WHYLENS_QUEUE__REDIS_URL")
    spool = None
    if settings.spool.enabled:
        spool = FileSpool(settings.spool.dir or settings.data_dir / "spool",
                          max_bytes=settings.spool.max_bytes)
    parts = ScaleOut(metrics=metrics, store=store, queue_mode=settings.explain_mode == "queue",
                     max_backlog=int(queue.max_length * queue.high_water), spool=spool)
    if url is None:
        return parts
    client = open_redis_client(url)
    prefix = settings.redis_key_prefix
    parts.redis = client
    parts.jobs = RedisStream(client, StreamKeys.named(prefix, EXPLAIN_STREAM), group=WORKER_GROUP,
                             max_length=queue.max_length,
                             dead_max_length=queue.dead_letter_max_length)
    if settings.archive.enabled:
        try:
            parts.archive_store = open_archive_store(settings)
        except StorageError as exc:
            raise StartupRefused(f"archive: {exc}") from exc
        parts.archive_feed = RedisStream(client, StreamKeys.named(prefix, FEED_STREAM),
                                         group=ARCHIVER_GROUP, max_length=queue.max_length,
                                         dead_max_length=queue.dead_letter_max_length)
        parts.feed = ArchiveFeedStore(store, parts.archive_feed)
        parts.store = parts.feed
        parts.archive_index = RedisArchiveIndex(client, key_prefix=prefix,
                                                max_ttl_s=settings.archive.index_ttl_s)
        parts.archive = ArchiveReader(parts.archive_store, parts.archive_index)
    return parts
