"""The local outage spool: records kept on disk while the trace store is unreachable."""

from storage.spool.file import FileSpool, SpoolChunk, SpoolDepth, frame_size

__all__ = ["FileSpool", "SpoolChunk", "SpoolDepth", "frame_size"]
