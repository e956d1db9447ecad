"""Live drift windows: per model version, time bucket and segment, aggregated counts."""
