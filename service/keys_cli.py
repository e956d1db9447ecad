"""`whylens keys ...`: list, rotate, activate, re-encrypt and retire keyring keys.

The keyring file is `--keyring`, else WHYLENS_KEYRING, else the embedded
<data_dir>/keyring.yaml. A keyring given as WHYLENS_KEYRING_DATA (an environment secret)
cannot be edited in place: `--stdout` prints the new document for the secret store.
Runbook: docs/security.md.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from service.errors import KeyringChangeRefused
from service.settings import Settings
from storage.crypto import InputSealer
from storage.keyring import (
    KeyKind,
    Keyring,
    activate_key,
    keyring_document,
    load_keyring,
    parse_keyring,
    parse_master_key,
    retire_key,
    rotate_keyring,
    write_keyring_file,
)
from storage.reencrypt import ReencryptReport, count_sealed_by_key, reencrypt_sealed_inputs
from storage.trace_factory import open_trace_store
from storage.traces.redis import RedisTraceStore
from storage.traces.sqlite import SqliteTraceStore


def master_key_of(settings: Settings) -> bytes | None:
    """The keyring's master key (envelope mode), if configured."""
    if settings.keyring_master_key is None:
        return None
    return parse_master_key(settings.keyring_master_key.get_secret_value())


def add_keys_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register `whylens keys` and its subcommands."""
    keys = commands.add_parser("keys", help="manage the keyring (rotate, re-encrypt, retire)")
    keys.add_argument("--keyring", type=Path, help="keyring file (default WHYLENS_KEYRING)")
    keys.add_argument("--stdout", action="store_true",
                      help="print the changed keyring instead of rewriting the file")
    actions = keys.add_subparsers(dest="keys_command", required=True)
    actions.add_parser("list", help="show key ids, kinds and statuses (never secrets)")
    actions.add_parser("wrap", help="rewrite the keyring with every key wrapped by "
                                    "WHYLENS_KEYRING_MASTER_KEY (envelope mode)")
    actions.add_parser("unwrap", help="rewrite the keyring with plain secrets (to change "
                                      "the master key: unwrap, then wrap with the new one)")
    rotate = actions.add_parser("rotate", help="add a new active AEAD key (old one: decrypt)")
    rotate.add_argument("--hmac", action="store_true",
                        help="also rotate the HMAC key: pseudonyms of new traces change")
    rotate.add_argument("--stage", action="store_true",
                        help="add the new keys as `decrypt` only; `activate` them later")
    activate = actions.add_parser("activate", help="make a staged key the active one")
    activate.add_argument("key_id")
    reencrypt = actions.add_parser("reencrypt", help="re-seal stored inputs with the active key")
    reencrypt.add_argument("--checkpoint", type=Path,
                           help="file keeping the scan position, to resume an interrupted run")
    reencrypt.add_argument("--batch", type=int, default=500)
    retire = actions.add_parser("retire", help="retire a key (nothing it sealed opens again)")
    retire.add_argument("key_id")
    retire.add_argument("--force", action="store_true",
                        help="retire even if stored inputs are still sealed with it")


def run_keys(args: argparse.Namespace, settings: Settings) -> int:
    """Run one `whylens keys` subcommand."""
    path, ring = _load(args, settings)
    command = args.keys_command
    if command == "list":
        for entry in ring.entries:
            print(f"{entry.key_id}\t{entry.kind}\t{entry.status}\t{entry.created}")
        return 0
    if command == "reencrypt":
        report = asyncio.run(_reencrypt(settings, ring, args.checkpoint, args.batch))
        print(f"scanned {report.scanned}, re-encrypted {report.reencrypted}, "
              f"unreadable {report.unreadable}")
        return 1 if report.unreadable else 0
    if command == "rotate":
        kinds: tuple[KeyKind, ...] = ("aead", "hmac") if args.hmac else ("aead",)
        ring, added = rotate_keyring(ring, kinds, stage=args.stage)
        note = ("staged (status decrypt): run `whylens keys activate ID` once every replica "
                "has the new keyring" if args.stage else "active: restart the replicas")
        message = "; ".join(f"added {e.key_id}" for e in added) + f" — {note}"
    elif command == "wrap":
        if master_key_of(settings) is None:
            raise KeyringChangeRefused("set WHYLENS_KEYRING_MASTER_KEY (base64 of 32 bytes)")
        message = "every key is now wrapped by the master key"
    elif command == "unwrap":
        message = "the keyring now holds plain secrets: protect the file, or wrap it again"
    elif command == "activate":
        ring = activate_key(ring, args.key_id)
        message = f"{args.key_id} is now active: restart the replicas"
    else:
        if not args.force:
            remaining = asyncio.run(_count(settings, ring, args.key_id))
            if remaining:
                raise KeyringChangeRefused(
                    f"{remaining} stored inputs are still sealed with {args.key_id}: run "
                    "`whylens keys reencrypt` first (or --force to make them unreadable)")
        ring = retire_key(ring, args.key_id)
        message = f"{args.key_id} retired"
    _save(args, settings, path, ring)
    print(message, file=sys.stderr)
    return 0


def _load(args: argparse.Namespace, settings: Settings) -> tuple[Path | None, Keyring]:
    path = args.keyring or settings.keyring
    master = master_key_of(settings)
    if path is None and settings.keyring_data is not None:
        if not args.stdout and args.keys_command not in ("list", "reencrypt"):
            raise KeyringChangeRefused("the keyring comes from WHYLENS_KEYRING_DATA: pass "
                                       "--stdout and store the printed document instead")
        return None, parse_keyring(settings.keyring_data.get_secret_value(),
                                   source="WHYLENS_KEYRING_DATA", master_key=master)
    path = path or settings.data_dir / "keyring.yaml"
    return path, load_keyring(path, master_key=master)


def _save(args: argparse.Namespace, settings: Settings, path: Path | None,
          ring: Keyring) -> None:
    master = None if args.keys_command == "unwrap" else master_key_of(settings)
    # With a master key configured, every write keeps (or puts) the keys wrapped.
    text = keyring_document(ring, master_key=master)
    if args.stdout or path is None:
        parse_keyring(text, source="new keyring", master_key=master)
        sys.stdout.write(text)
    else:
        write_keyring_file(path, text, master_key=master)


def _store(settings: Settings) -> SqliteTraceStore | RedisTraceStore:
    return open_trace_store(settings.traces_url, key_prefix=settings.redis_key_prefix,
                            trace_ttl_s=settings.retention.traces_s,
                            record_ttl_s=settings.retention.records_s)


async def _reencrypt(settings: Settings, ring: Keyring, checkpoint: Path | None,
                     batch: int) -> ReencryptReport:
    store = _store(settings)
    try:
        return await reencrypt_sealed_inputs(store, InputSealer(ring), checkpoint=checkpoint,
                                             batch=batch)
    finally:
        await store.close()


async def _count(settings: Settings, ring: Keyring, key_id: str) -> int:
    store = _store(settings)
    try:
        return await count_sealed_by_key(store, InputSealer(ring), key_id)
    finally:
        await store.close()
