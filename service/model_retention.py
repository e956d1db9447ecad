"""Each model's resolved retention, read once per lookup object from its served manifest."""

from __future__ import annotations

import logging

from service.errors import ModelUnavailable, ModelUnknown, VersionUnknown
from service.retention import Retention, retention_for
from service.runtime import Runtime

logger = logging.getLogger(__name__)


class RetentionLookup:
    """Resolves a model's retention from the manifest its `production` alias serves.

    Settings alone apply when the model cannot be loaded (unknown, refused, deleted):
    closing an incident or purging the archive must not depend on the model loading.
    Results are cached for the life of the object; make a new one per run to see
    changed manifests.
    """

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self._cache: dict[str, Retention] = {}

    async def of(self, model: str) -> Retention:
        """The retention of `model`."""
        if model not in self._cache:
            try:
                manifest = (await self._runtime.loader.get(model, None)).manifest
            except (ModelUnknown, VersionUnknown, ModelUnavailable) as exc:
                logger.warning("retention of %s from settings only: %s", model, exc)
                manifest = None
            self._cache[model] = retention_for(self._runtime.settings.retention, manifest,
                                               model=model)
        return self._cache[model]
