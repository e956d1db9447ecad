"""Model versions, aliases and manifests."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from explainers.tree import LightGBMTreeExplainer
from explainers.tree_linear import LinearTreeExplainer
from service.deps import ReadCaller, RuntimeDep
from service.errors import ModelUnknown
from storage.masked_manifest import masked_manifest_json

router = APIRouter(tags=["read"])


@router.get("/v1/models")
async def list_models(runtime: RuntimeDep, caller: ReadCaller) -> dict[str, Any]:
    """Every published model with its versions and aliases."""
    catalog = runtime.loader.catalog
    models = []
    for name in await catalog.list_models():
        models.append({"name": name, "versions": await catalog.list_versions(name),
                       "aliases": await catalog.aliases(name)})
    return {"models": models}


@router.get("/v1/models/{name}")
async def get_model(name: str, runtime: RuntimeDep, caller: ReadCaller) -> dict[str, Any]:
    """One model: its versions (identity fields) and aliases."""
    catalog = runtime.loader.catalog
    if name not in await catalog.list_models():
        raise ModelUnknown(name)
    versions = []
    for version in await catalog.list_versions(name):
        manifest = await catalog.read_manifest(name, version)
        versions.append({
            "version": version, "flavor": manifest.flavor, "task": manifest.task,
            "created_at": manifest.created_at, "owner": manifest.owner,
            "criticality": manifest.criticality, "rollback_to": manifest.rollback_to,
            "training_data_snapshot": manifest.training_data_snapshot,
        })
    return {"name": name, "versions": versions, "aliases": await catalog.aliases(name)}


@router.get("/v1/models/{name}/versions/{version}")
async def get_version(name: str, version: str, runtime: RuntimeDep,
                      caller: ReadCaller) -> dict[str, Any]:
    """The manifest of a version (or alias), masked, and how it is loaded in this replica.

    `manifest_sha256` is the digest of the stored manifest, before masking.
    """
    resolved = await runtime.loader.resolve(name, version)
    ready = await runtime.loader.get(name, resolved)
    aliases = await runtime.loader.catalog.aliases(name)
    return {
        # Masked features' training values are masked as in traces (hash, redact, bucket).
        "manifest": masked_manifest_json(ready.manifest, ready.masker),
        "manifest_sha256": ready.manifest_sha256,
        "aliases": sorted(a for a, v in aliases.items() if v == resolved),
        "explainer": {"method": ready.explainer.method,
                      "output_space": ready.explainer.output_space.value,
                      "load_ms": round(ready.load_ms, 1),
                      "kernel_warm_up_ms": _rounded(runtime.loader.kernel_warm_up_ms),
                      **tree_kernel_fields(ready.explainer)},
    }


def _rounded(ms: float | None) -> float | None:
    return None if ms is None else round(ms, 1)


def tree_kernel_fields(explainer: object) -> dict[str, Any]:
    """Kernel, memory and warm-up of a TreeSHAP explainer (nothing for the others)."""
    if isinstance(explainer, LightGBMTreeExplainer):
        return {"kernel": "lightgbm_pred_contrib"}
    if not isinstance(explainer, LinearTreeExplainer):
        return {}
    return {
        "kernel": explainer.kernel,
        "memory_bytes": explainer.memory_bytes,
        "memory_budget_bytes": explainer.memory_budget_bytes,
        "trees_linear": explainer.trees_linear,
        "trees_classic": explainer.trees_classic,
        "warm_up_ms": round(explainer.warm_up_ms, 1),
        "predictions_from_output": explainer.shares_model_call,
    }
