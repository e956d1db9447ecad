"""How archived traces and prediction logs are laid out in object storage.

    traces/dt=YYYY-MM-DD/model=<name>/<batch>.jsonl.gz
    records/dt=YYYY-MM-DD/model=<name>/<batch>.jsonl.gz

`dt` is the UTC date of the decision's event time (Hive-style partitions, so Athena,
DuckDB or Spark read the archive as a table). One line per trace (the trace JSON exactly
as served) or per record (the compact prediction log: never the sealed raw inputs, which
keep their own, shorter retention). A batch's name is derived from the feed entries it
holds, so retrying the same batch rewrites the same objects instead of adding copies.
"""

from __future__ import annotations

import gzip
import hashlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal
from urllib.parse import quote, unquote

Kind = Literal["traces", "records"]


@dataclass(frozen=True, slots=True)
class ArchiveLine:
    """One trace or record to archive."""

    kind: Kind
    request_id: str
    model: str
    event_ms: int
    body: bytes

    def __repr__(self) -> str:
        return f"ArchiveLine({self.kind}, request_id={self.request_id!r})"


@dataclass(frozen=True, slots=True)
class ArchiveObject:
    """One gzip'd JSON-lines object and the request IDs of its lines, in order."""

    key: str
    kind: Kind
    data: bytes
    request_ids: tuple[str, ...]
    day: str
    model: str


def batch_name(entry_ids: Sequence[str]) -> str:
    """Name a batch after its first feed entry and a digest of all its entry IDs."""
    ordered = sorted(entry_ids, key=_entry_sort_key)
    digest = hashlib.blake2b(",".join(ordered).encode(), digest_size=6).hexdigest()
    return f"{ordered[0].replace('-', '_')}-{digest}"


def _entry_sort_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def partition_date(event_ms: int) -> str:
    """The `dt=` partition (UTC date) of an event time."""
    return datetime.fromtimestamp(event_ms / 1000, tz=UTC).strftime("%Y-%m-%d")


def build_objects(lines: Sequence[ArchiveLine], *, batch: str) -> list[ArchiveObject]:
    """Group lines by kind, date and model into one object each."""
    groups: defaultdict[tuple[Kind, str, str], list[ArchiveLine]] = defaultdict(list)
    for line in lines:
        groups[(line.kind, partition_date(line.event_ms), line.model)].append(line)
    objects = []
    for (kind, day, model), members in sorted(groups.items()):
        key = f"{kind}/dt={day}/model={quote(model, safe='')}/{batch}.jsonl.gz"
        payload = b"".join(member.body + b"\n" for member in members)
        # mtime=0: the same batch always compresses to the same bytes.
        objects.append(ArchiveObject(key, kind, gzip.compress(payload, mtime=0),
                                     tuple(member.request_id for member in members),
                                     day, model))
    return objects


@dataclass(frozen=True, slots=True)
class Partition:
    """One `<kind>/dt=<day>/model=<name>/` folder of the archive."""

    kind: Kind
    day: str
    model: str

    @property
    def prefix(self) -> str:
        """The list prefix of the partition's objects."""
        return f"{self.kind}/dt={self.day}/model={quote(self.model, safe='')}/"


def partition_of(key: str) -> Partition | None:
    """The partition of an archive object key, or None when the key is not laid out so."""
    parts = key.split("/")
    if len(parts) != 4 or parts[0] not in ("traces", "records"):
        return None
    kind, day_part, model_part, _name = parts
    if not (day_part.startswith("dt=") and model_part.startswith("model=")):
        return None
    day = day_part.removeprefix("dt=")
    try:
        datetime.strptime(day, "%Y-%m-%d")
    except ValueError:
        return None
    model = unquote(model_part.removeprefix("model="))
    return Partition("traces" if kind == "traces" else "records", day, model) if model else None


def partition_expiry_ms(day: str, retention_s: int) -> int:
    """When a partition's retention ends: the end of its UTC day plus the retention."""
    start = datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=UTC)
    return int((start + timedelta(days=1)).timestamp() * 1000) + retention_s * 1000


def location(key: str, line: int) -> str:
    """The index value of one line: object key and line number."""
    return f"{key}#{line}"


def parse_location(value: str) -> tuple[str, int]:
    """Split an index value into object key and line number."""
    key, _, line = value.rpartition("#")
    if not key or not line.isdigit():
        raise ValueError(f"not an archive location: {value!r}")
    return key, int(line)


def read_line(data: bytes, line: int) -> bytes | None:
    """Return line `line` of a gzip'd JSON-lines object, or None when it has fewer lines."""
    lines = gzip.decompress(data).split(b"\n")
    return lines[line] if 0 <= line < len(lines) and lines[line] else None
