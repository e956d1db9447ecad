"""Explanation budgets shared by replicas (token buckets in the trace store's Redis)."""
