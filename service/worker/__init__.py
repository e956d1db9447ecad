"""`whylens worker`: explanation jobs from the Redis Stream, and the archive writer."""
