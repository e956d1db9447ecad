"""Drift context: live windows fed by ingest, reports, trace drift blocks, labels, gauges."""
