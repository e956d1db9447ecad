"""`whylens policy NAME FILE`: publish a sampling policy beside the model (CI pipelines)."""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any

from service.errors import ModelUnknown
from service.sampling.document import load_policy_text, validate_policy
from service.sampling.store import PolicyStore
from service.settings import Settings
from storage.artifact_factory import open_artifact_store
from storage.catalog import ModelCatalog


def add_policy_parser(commands: Any) -> None:
    """Register the `policy` subcommand."""
    policy = commands.add_parser(
        "policy", help="publish a sampling policy (YAML or JSON) as the model's next version")
    policy.add_argument("name", help="model name")
    policy.add_argument("file", type=Path, help="policy document (.yaml, .yml or .json)")
    policy.add_argument("--artifacts", help="artifact store URI (default WHYLENS_ARTIFACTS)")


def run_policy(args: argparse.Namespace, settings: Settings) -> int:
    """Validate the file and publish it; print the version."""
    if args.artifacts:
        settings = settings.model_copy(update={"artifacts": args.artifacts})
    version = asyncio.run(_publish(settings, args.name, args.file))
    print(f"{args.name}: sampling policy version {version} published to "
          f"{settings.artifacts_uri}")
    return 0


async def _publish(settings: Settings, name: str, path: Path) -> int:
    store = open_artifact_store(settings.artifacts_uri, s3_endpoint_url=settings.s3_endpoint_url)
    if name not in await ModelCatalog(store).list_models():
        raise ModelUnknown(name)
    raw = load_policy_text(path.read_bytes(), yaml_text=path.suffix in (".yaml", ".yml"))
    document = validate_policy(raw, max_counterfactuals=settings.limits.counterfactuals)
    stored = await PolicyStore(store, max_counterfactuals=settings.limits.counterfactuals
                               ).publish(name, document, updated_by="cli")
    return stored.version
