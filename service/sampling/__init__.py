"""Sampling: which records get explained, and why."""
