"""The `whylens` command line: publish, promote, serve, demo."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from pydantic import ValidationError

from service.archive_cli import add_archive_parser, run_archive
from service.errors import ServiceError
from service.keys_cli import add_keys_parser, run_keys
from service.log_format import configure_logging
from service.sampling.cli import add_policy_parser, run_policy
from service.settings import Settings
from service.worker.cli import add_worker_parsers, run_dead_letters, run_worker_command
from storage.errors import StorageError

logger = logging.getLogger("whylens")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="whylens", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    publish = commands.add_parser("publish", help="publish a model version with its manifest")
    publish.add_argument("--name", required=True)
    publish.add_argument("--version", required=True)
    publish.add_argument("--model", required=True, type=Path,
                         help="LightGBM text model (.txt) or scikit-learn skops file (.skops)")
    publish.add_argument("--train", required=True, type=Path, help="training data .csv/.parquet")
    publish.add_argument("--label", help="label column of the training data (ignored)")
    publish.add_argument("--features", type=Path, help="FEATURES.yaml overrides")
    publish.add_argument("--artifacts", help="artifact store URI (default WHYLENS_ARTIFACTS)")
    publish.add_argument("--sign", type=Path, help="Ed25519 private key (PEM) to sign with")
    publish.add_argument("--owner", default="unknown")
    publish.add_argument("--criticality", default="medium",
                         choices=["low", "medium", "high", "critical"])
    publish.add_argument("--rollback-to", dest="rollback_to")
    publish.add_argument("--bins", type=int, default=10, help="quantile bins of the baseline")

    promote = commands.add_parser("promote", help="point an alias at a version")
    promote.add_argument("name")
    promote.add_argument("version")
    promote.add_argument("--alias", required=True)
    promote.add_argument("--artifacts")

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)

    add_keys_parser(commands)
    add_worker_parsers(commands)
    add_policy_parser(commands)
    add_archive_parser(commands)

    demo = commands.add_parser("demo", help="embedded demo: model, service and traffic")
    demo.add_argument("--host", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=8080)
    demo.add_argument("--records", type=int, default=3000)
    demo.add_argument("--no-serve", action="store_true",
                      help="exit after replaying (for scripted checks)")
    return parser


def _settings(artifacts: str | None = None) -> Settings:
    settings = Settings()
    if artifacts:
        settings = settings.model_copy(update={"artifacts": artifacts})
    return settings


def _run_publish(args: argparse.Namespace) -> int:
    from service.publishing import PublishRequest, publish_from_files

    settings = _settings(args.artifacts)
    request = PublishRequest(
        name=args.name, version=args.version, model_path=args.model, train_path=args.train,
        label=args.label, features_path=args.features, signing_key_path=args.sign,
        owner=args.owner, criticality=args.criticality, rollback_to=args.rollback_to,
        bins=args.bins,
    )
    manifest = asyncio.run(publish_from_files(settings, request))
    print(f"published {manifest.name}@{manifest.version} ({manifest.flavor}, {manifest.task}, "
          f"{len(manifest.features)} features) to {settings.artifacts_uri}")
    return 0


def _run_promote(args: argparse.Namespace) -> int:
    from service.publishing import promote

    settings = _settings(args.artifacts)
    asyncio.run(promote(settings, args.name, args.version, args.alias))
    print(f"{args.name}: {args.alias} -> {args.version}")
    return 0


def _run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from service.app import api_key_table, create_app

    settings = Settings()
    api_key_table(settings)  # refuse to start before binding the port
    # log_config=None: uvicorn's own loggers go through ours (WHYLENS_LOG_FORMAT).
    uvicorn.run(create_app(settings), host=args.host, port=args.port,
                log_level=settings.log_level.lower(), access_log=False, log_config=None)
    return 0


def _run_demo(args: argparse.Namespace) -> int:
    from service.demo.runner import run_demo

    return run_demo(host=args.host, port=args.port, records=args.records,
                    serve=not args.no_serve)


def _run_keys(args: argparse.Namespace) -> int:
    return run_keys(args, Settings())


def _run_worker(args: argparse.Namespace) -> int:
    return run_worker_command(args, Settings())


def _run_dead_letters(args: argparse.Namespace) -> int:
    return run_dead_letters(args, Settings())


def _run_policy(args: argparse.Namespace) -> int:
    return run_policy(args, Settings())


def _run_archive(args: argparse.Namespace) -> int:
    return run_archive(args, Settings())


COMMANDS = {"publish": _run_publish, "promote": _run_promote, "serve": _run_serve,
            "demo": _run_demo, "keys": _run_keys, "worker": _run_worker,
            "dead-letters": _run_dead_letters, "policy": _run_policy, "archive": _run_archive}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `whylens` console script."""
    args = _parser().parse_args(argv)
    try:
        settings = Settings()
    except ValidationError as exc:
        print(f"whylens: invalid WHYLENS_* settings:\n{exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    try:
        return int(COMMANDS[args.command](args))
    except (ServiceError, StorageError) as exc:
        print(f"whylens {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
