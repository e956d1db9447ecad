"""Move sealed inputs to the active key, resumably (`whylens keys reencrypt`)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from storage.crypto import InputSealer, SealBroken
from storage.keyring import KeyUnknown
from storage.protocols import SealedInputLog
from storage.records import SealedUpdate

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ReencryptReport:
    """What one pass did."""

    scanned: int
    reencrypted: int
    unreadable: int
    """Envelopes that could not be opened (retired key, corrupt): left as they were."""


async def reencrypt_sealed_inputs(log: SealedInputLog, sealer: InputSealer, *,
                                  checkpoint: Path | None = None,
                                  batch: int = 500) -> ReencryptReport:
    """Re-seal every input not under the active key; safe to stop and run again.

    The scan cursor is saved to `checkpoint` after each page, so an interrupted run
    resumes there (a finished run removes it). Re-running from scratch is also safe:
    inputs already under the active key are skipped, and each swap is a compare-and-set,
    so a record written meanwhile is never overwritten with stale bytes.
    """
    cursor = _read_checkpoint(checkpoint)
    scanned = changed = unreadable = 0
    while True:
        page = await log.scan_sealed_inputs(cursor, limit=batch)
        updates = []
        for item in page.items:
            scanned += 1
            try:
                if sealer.key_id_of(item.sealed) == sealer.active_key_id:
                    continue
                plain = sealer.open(item.sealed, request_id=item.request_id)
            except (SealBroken, KeyUnknown) as exc:
                unreadable += 1
                logger.error("cannot re-encrypt inputs of %s: %s", item.request_id, exc)
                continue
            updates.append(SealedUpdate(item.request_id, item.model, item.sealed,
                                        sealer.seal(plain, request_id=item.request_id)))
        changed += await log.replace_sealed_inputs(updates)
        cursor = page.next_cursor
        if cursor is None:
            break
        _write_checkpoint(checkpoint, cursor)
    if checkpoint is not None:
        checkpoint.unlink(missing_ok=True)
    return ReencryptReport(scanned=scanned, reencrypted=changed, unreadable=unreadable)


async def count_sealed_by_key(log: SealedInputLog, sealer: InputSealer, key_id: str, *,
                              batch: int = 1000) -> int:
    """Count live sealed inputs sealed with `key_id` (a full scan)."""
    cursor: str | None = None
    count = 0
    while True:
        page = await log.scan_sealed_inputs(cursor, limit=batch)
        for item in page.items:
            try:
                count += sealer.key_id_of(item.sealed) == key_id
            except SealBroken:
                continue
        cursor = page.next_cursor
        if cursor is None:
            return count


def _read_checkpoint(path: Path | None) -> str | None:
    if path is None or not path.exists():
        return None
    text = path.read_text(encoding="utf-8").strip()
    return text or None


def _write_checkpoint(path: Path | None, cursor: str) -> None:
    if path is None:
        return
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(cursor, encoding="utf-8")
    os.replace(temporary, path)
