"""Incidents: lifecycle, summaries, backfills and exports through a durable outbox."""
