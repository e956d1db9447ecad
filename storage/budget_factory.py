"""Open the shared explanation budget for the trace store URL (None: per replica)."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import urlsplit

from storage.budget.redis import RedisExplanationBudget
from storage.protocols import ExplanationBudget
from storage.redis_client import open_redis_client


def _open_redis(url: str, *, key_prefix: str) -> ExplanationBudget:
    return RedisExplanationBudget(open_redis_client(url), key_prefix=key_prefix)


# The embedded SQLite mode is one process: its in-process bucket is already shared.
BUDGETS: dict[str, Callable[..., ExplanationBudget]] = {
    "redis": _open_redis,
    "rediss": _open_redis,
}


def open_explanation_budget(url: str, *, key_prefix: str = "wl") -> ExplanationBudget | None:
    """Return the shared budget of the trace store's server, or None for a local store."""
    opener = BUDGETS.get(urlsplit(url).scheme.lower())
    return None if opener is None else opener(url, key_prefix=key_prefix)
