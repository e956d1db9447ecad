"""Reading and publishing a model's sampling policy; listing what the budget deferred."""

from __future__ import annotations

from typing import Any

import orjson

from service.auth import Caller
from service.errors import FieldError, ModelUnknown, RecordInvalid
from service.runtime import Runtime
from service.sampling.document import load_policy_text, validate_policy
from service.sampling.engine import DEFAULT_VERSION
from service.sampling.store import StoredPolicy
from service.trace_builder import iso_ms
from storage.records import RecordQuery


async def require_model(runtime: Runtime, model: str) -> None:
    """Raise ModelUnknown unless the model is published."""
    if model not in await runtime.loader.catalog.list_models():
        raise ModelUnknown(model)


def policy_view(runtime: Runtime, model: str, stored: StoredPolicy | None) -> dict[str, Any]:
    """A policy as served: published (with its version) or the settings' default."""
    in_force = runtime.policy.policy(model)
    if stored is None:
        default = runtime.policy.default_document
        return {"model": model, "version": DEFAULT_VERSION, "source": "default",
                "label": f"{model}@{DEFAULT_VERSION}", "in_force": in_force.label,
                "policy": default.model_dump(mode="json", exclude_none=True)}
    return {**stored.as_json(), "source": "published", "label": f"{model}@{stored.version}",
            "in_force": in_force.label}


async def read_policy(runtime: Runtime, model: str, version: int | None) -> dict[str, Any]:
    """The current policy (or one published version) of a model."""
    await require_model(runtime, model)
    store = runtime.policy.store
    if version is None:
        view = policy_view(runtime, model, await store.current(model))
    else:
        stored = await store.at_version(model, version)
        if stored is None:
            raise RecordInvalid([FieldError("version", f"{model} has no policy version "
                                                       f"{version}")])
        view = policy_view(runtime, model, stored)
    view["versions"] = await store.versions(model)
    return view


async def publish_policy(runtime: Runtime, model: str, data: bytes, *, yaml_text: bool,
                         caller: Caller) -> dict[str, Any]:
    """Validate and publish the next version; this replica uses it at once."""
    await require_model(runtime, model)
    document = validate_policy(load_policy_text(data, yaml_text=yaml_text),
                               max_counterfactuals=runtime.settings.limits.counterfactuals)
    stored = await runtime.policy.store.publish(model, document, updated_by=caller.name)
    runtime.policy.use(model, stored)
    return {**policy_view(runtime, model, stored),
            "versions": await runtime.policy.store.versions(model)}


async def list_deferred(runtime: Runtime, model: str, *, since_ms: int | None,
                        until_ms: int | None, limit: int, cursor: str | None) -> dict[str, Any]:
    """Records a rule sampled but the budget deferred (newest first), for backfills."""
    await require_model(runtime, model)
    page = await runtime.incidents.traces.list_records(RecordQuery(
        model=model, since_ms=since_ms, until_ms=until_ms, deferred_only=True, limit=limit,
        cursor=cursor))
    items = []
    for record in page.items:
        body = orjson.loads(record.body)
        items.append({"request_id": record.request_id, "version": record.version,
                      "reason": record.reason, "policy": body.get("policy"),
                      "timestamp": iso_ms(record.event_ms),
                      "received_at": iso_ms(record.received_ms)})
    return {"model": model, "records": items, "next_cursor": page.next_cursor}
