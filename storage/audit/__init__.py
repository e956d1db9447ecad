"""Append-only audit log: unmasked reads and admin actions (SQLite table, Redis Stream)."""
