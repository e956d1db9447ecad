"""Long-term archive of traces and prediction logs in object storage, with a lookup index."""

from storage.archive.feed import FEED_STREAM, ArchiveFeedStore
from storage.archive.index import RedisArchiveIndex
from storage.archive.layout import ArchiveLine, ArchiveObject, batch_name, build_objects
from storage.archive.writer import ArchiveReader, ArchiveWriter, Backoff

__all__ = ["FEED_STREAM", "ArchiveFeedStore", "ArchiveLine", "ArchiveObject", "ArchiveReader",
           "ArchiveWriter", "Backoff", "RedisArchiveIndex", "batch_name", "build_objects"]
