"""Redis Streams with consumer groups: explanation jobs and the archive feed."""

from storage.queue.jobs import ExplainJob, JobMalformed
from storage.queue.stream import Delivery, QueueStats, Reclaimed, RedisStream, StreamKeys

__all__ = ["Delivery", "ExplainJob", "JobMalformed", "QueueStats", "Reclaimed", "RedisStream",
           "StreamKeys"]
