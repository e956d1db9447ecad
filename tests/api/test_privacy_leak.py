"""Masked raw values never leave in raw form — except to an audited `?unmask=true`.

Thousands of records whose masked features are random unique values are ingested and
explained, and some attached to an incident; then every Redis key and value of the test
prefix (type-aware), every SQLite table and file, every captured log line (DEBUG) and
every answer a `read` caller can get (API and UI pages, the incident summary included)
are searched for any of those values.
"""

from __future__ import annotations

import json
import logging
import re
import sqlite3
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
import redis.asyncio

from service.settings import SamplingSettings, Settings
from storage.keyring import create_keyring_file
from tests.api.conftest import record_from
from tests.api.security_support import as_role, keyed_client

RECORDS = 2000
BATCH = 500
UNMASKED_CHECKED = 25
INCIDENT = "INC-LEAK"


def masked_records(frame: pd.DataFrame, seed: int) -> tuple[list[dict[str, Any]], list[str]]:
    """Records whose masked features (zip_code: hash, income/savings: bucket) are unique."""
    rng = np.random.default_rng(seed)
    records, secrets = [], []
    now = datetime.now(UTC)
    for i in range(RECORDS):
        # Minutes apart, so many drift buckets hold a single record (an aggregate of one
        # value is that value).
        when = (now - timedelta(minutes=7 * i)).strftime("%Y-%m-%dT%H:%M:%SZ")
        record = record_from(frame, i % len(frame), f"leak-{seed}-{i}", timestamp=when)
        zip_code = f"zip-{uuid.uuid4().hex}"
        income = round(30000 + float(rng.uniform(0, 90000)), 7)
        savings = round(float(rng.uniform(100, 50000)), 7)
        record["features"].update(zip_code=zip_code, income=income, savings_balance=savings)
        records.append(record)
        secrets += [zip_code, repr(income), repr(savings)]
    return records, secrets


# Every secret is a token of one of these shapes; collecting the corpus's tokens once
# keeps the search linear in the corpus size (thousands of `in` scans of tens of MB are not).
_TOKENS = re.compile(rb"zip-[0-9a-f]{32}|[0-9]+\.[0-9]+")


_NUMBERS = re.compile(rb"-?[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?")


def found_in(corpus: bytes, secrets: list[str]) -> list[str]:
    tokens = set(_TOKENS.findall(corpus))
    return [s for s in secrets if s.encode() in tokens]


def near_numbers(corpus: bytes, targets: list[float]) -> list[float]:
    """Targets some number in the corpus equals to 1e-9 relative (any formatting)."""
    numbers = np.unique(np.array([float(t) for t in _NUMBERS.findall(corpus)]))
    wanted = np.asarray(targets)
    at = np.clip(np.searchsorted(numbers, wanted), 1, len(numbers) - 1)
    nearest = np.minimum(np.abs(numbers[at] - wanted), np.abs(numbers[at - 1] - wanted))
    return wanted[nearest <= 1e-9 * np.maximum(np.abs(wanted), 1.0)].tolist()


async def redis_corpus(url: str, prefix: str) -> bytes:
    """Every key under the prefix and its value, read according to its type."""
    client = redis.asyncio.Redis.from_url(url)
    readers = {
        "string": lambda pipe, key: pipe.get(key),
        "hash": lambda pipe, key: pipe.hgetall(key),
        "list": lambda pipe, key: pipe.lrange(key, 0, -1),
        "set": lambda pipe, key: pipe.smembers(key),
        "zset": lambda pipe, key: pipe.zrange(key, 0, -1, withscores=True),
        "stream": lambda pipe, key: pipe.xrange(key),
    }
    parts: list[bytes] = []
    try:
        keys = [key async for key in client.scan_iter(match=f"{prefix}:*", count=5000)]
        for start in range(0, len(keys), 1000):
            chunk = keys[start: start + 1000]
            pipe = client.pipeline(transaction=False)
            for key in chunk:
                pipe.type(key)
            kinds = [kind.decode() for kind in await pipe.execute()]
            unknown = {k for k in kinds if k not in readers and k != "none"}
            assert not unknown, f"unexpected Redis types {unknown}: extend the scan"
            pipe = client.pipeline(transaction=False)
            for key, kind in zip(chunk, kinds, strict=True):
                readers.get(kind, lambda p, k: p.exists(k))(pipe, key)
            parts += chunk
            parts += [repr(value).encode() for value in await pipe.execute()]
    finally:
        await client.aclose()
    assert keys, "nothing found under the test prefix"
    return b"\n".join(parts)


def sqlite_corpus(path: Path) -> bytes:
    conn = sqlite3.connect(path)
    parts: list[bytes] = []
    try:
        tables = [row[0] for row in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        assert {"traces", "records"} <= set(tables)
        for table in tables:
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                parts += [v if isinstance(v, bytes) else str(v).encode() for v in row]
    finally:
        conn.close()
    # The files themselves too: nothing may linger in free pages or the WAL.
    parts += [p.read_bytes() for p in path.parent.iterdir() if p.name.startswith(path.name)]
    return b"\n".join(parts)


async def read_caller_corpus(http: httpx.AsyncClient, ids: list[str]) -> bytes:
    """Everything a `read` caller can fetch."""
    read = as_role("read")
    parts: list[bytes] = []

    async def fetch(method: str, url: str, **kwargs: Any) -> httpx.Response:
        response = await http.request(method, url, headers=read, **kwargs)
        assert response.status_code < 500, (url, response.text[:300])
        parts.append(response.content)
        return response

    # Every trace through search pages; a sample one by one (adds the drift block).
    for request_id in ids[::10]:
        assert (await fetch("GET", f"/v1/traces/{request_id}")).status_code == 200
    cursor = None
    listed: set[str] = set()
    while True:
        page = await fetch("GET", "/v1/traces", params={"limit": 500, "model": "credit",
                                                        **({"cursor": cursor} if cursor
                                                           else {})})
        listed.update(t["request_id"] for t in page.json()["traces"])
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert set(ids) <= listed
    for request_id in ids[:5]:
        await fetch("POST", "/v1/explain", json={"request_id": request_id})
        await fetch("POST", "/v1/explain?counterfactuals=2", json={"request_id": request_id})
    for url in ("/v1/models", "/v1/models/credit", "/v1/models/credit/versions/1",
                "/v1/models/credit/drift?window=7d", "/v1/models/credit/policy",
                "/v1/models/credit/deferred", "/metrics", "/readyz", "/healthz",
                "/v1/incidents", f"/v1/incidents/{INCIDENT}",
                f"/v1/traces?incident={INCIDENT}", "/ui/", "/ui/models/credit",
                f"/ui/incidents/{INCIDENT}"):
        assert (await fetch("GET", url)).status_code == 200, url
    for request_id in ids[:20]:
        assert (await fetch("GET", f"/ui/traces/{request_id}")).status_code == 200
    return b"\n".join(parts)


async def open_incident(http: httpx.AsyncClient, ids: list[str]) -> None:
    """An incident holding some traces: its summary and pages are read-caller answers too."""
    admin = as_role("admin")
    created = await http.post("/v1/incidents", headers=admin, json={
        "id": INCIDENT, "model": "credit", "title": "leak", "severity": 3,
        "explain_all": False})
    assert created.status_code == 201, created.text
    attached = await http.post(f"/v1/incidents/{INCIDENT}/traces", headers=admin,
                               json={"request_ids": ids[:40]})
    assert attached.status_code == 200 and len(attached.json()["attached"]) == 40


async def ingest_all(http: httpx.AsyncClient, records: list[dict[str, Any]],
                     secrets: list[str]) -> bytes:
    parts: list[bytes] = []
    for start in range(0, len(records), BATCH):
        response = await http.post("/v1/predictions", headers=as_role("ingest"),
                                   json={"records": records[start: start + BATCH]})
        assert response.status_code == 200, response.text[:300]
        assert all(r["status"] == "accepted" for r in response.json()["records"])
        parts.append(response.content)
    # Refused records must not echo a masked value either.
    bad = dict(records[0], request_id="leak-bad-1")
    bad["features"] = dict(bad["features"], zip_code=secrets[0] * 40)
    wrong_type = dict(records[1], request_id="leak-bad-2")
    wrong_type["features"] = dict(wrong_type["features"], income=secrets[4])
    extra = dict(records[2], request_id="leak-bad-3")
    extra["features"] = dict(extra["features"], not_a_feature=secrets[6])
    for body in (bad, wrong_type, extra, {"records": [bad, wrong_type, extra]}):
        response = await http.post("/v1/predictions", headers=as_role("ingest"), json=body)
        assert 400 <= response.status_code < 500 or response.status_code == 200
        parts.append(response.content)
    return b"\n".join(parts)


def training_values(frame: pd.DataFrame, feature: str) -> list[str]:
    """The distinct raw values of a feature in the training data (the manifest's source)."""
    return sorted({str(v) for v in frame[feature].dropna()})


def http_manifest_mean(settings: Settings, feature: str) -> float:
    """The training mean of a feature, from the published manifest (public data)."""
    root = Path(settings.artifacts_uri.removeprefix("file://"))
    manifest = json.loads((root / "models/credit/1/manifest.json").read_text())
    return float(manifest["baseline"]["features"][feature]["mean"])


@pytest.fixture(params=[pytest.param("sqlite", id="sqlite"),
                        pytest.param("redis", id="redis", marks=pytest.mark.integration)])
async def leak_client(request: pytest.FixtureRequest, published_settings: Settings,
                      tmp_path: Path, unique_prefix: str
                      ) -> AsyncIterator[tuple[httpx.AsyncClient, str]]:
    update: dict[str, Any] = {"sampling": SamplingSettings(rate=1.0)}
    if request.param == "redis":
        url = str(request.getfixturevalue("redis_url"))
        keyring = tmp_path / "keyring.yaml"
        create_keyring_file(keyring)
        update.update(traces=url, redis_key_prefix=unique_prefix, keyring=keyring)
    async with keyed_client(published_settings, tmp_path, **update) as http:
        yield http, request.param
    if request.param == "redis":
        client = redis.asyncio.Redis.from_url(url)
        keys = [k async for k in client.scan_iter(match=f"{unique_prefix}:*", count=1000)]
        for start in range(0, len(keys), 1000):
            await client.delete(*keys[start: start + 1000])
        await client.aclose()


@pytest.mark.slow
async def test_masked_values_appear_nowhere_until_an_auditor_unmasks_them(
        leak_client: tuple[httpx.AsyncClient, str], credit_frame: pd.DataFrame,
        caplog: pytest.LogCaptureFixture, tmp_path: Path, unique_prefix: str,
        request: pytest.FixtureRequest, published_settings: Settings) -> None:
    http, backend = leak_client
    caplog.set_level(logging.DEBUG)
    records, secrets = masked_records(credit_frame, seed=len(backend))
    ids = [r["request_id"] for r in records]
    ingested = await ingest_all(http, records, secrets)
    await open_incident(http, ids)
    corpus = [ingested, await read_caller_corpus(http, ids)]
    if backend == "redis":
        corpus.append(await redis_corpus(str(request.getfixturevalue("redis_url")),
                                         unique_prefix))
    else:
        corpus.append(sqlite_corpus(tmp_path / "traces.db"))
    log_text = "\n".join(
        r.getMessage() + (logging.Formatter().formatException(r.exc_info)
                          if r.exc_info else "") for r in caplog.records)
    corpus.append(log_text.encode())
    # The scan itself must be able to see values: masked forms and request IDs are there.
    everything = b"\n".join(corpus)
    assert ids[0].encode() in everything and b'"zip_code":"h:' in everything
    assert found_in(everything, secrets) == []
    # Nor the training values of the hashed feature (manifest categories, baseline keys).
    training_zips = training_values(credit_frame, "zip_code")
    assert len(training_zips) > 10
    assert [z for z in training_zips if f'"{z}"'.encode() in everything] == []
    # Nor any number that is a masked value in another formatting, or that value minus a
    # public constant (the training mean a stored moment might be centred on).
    means = {name: http_manifest_mean(published_settings, name)
             for name in ("income", "savings_balance")}
    numbers = [(name, float(r["features"][name])) for r in records for name in means]
    targets = [x for _, x in numbers] + [x - means[name] for name, x in numbers]
    assert near_numbers(everything, targets) == []

    checked = ids[:UNMASKED_CHECKED]
    revealed: list[bytes] = []
    for index, request_id in enumerate(checked):
        response = await http.get(f"/v1/traces/{request_id}?unmask=true",
                                  headers=as_role("audit"))
        assert response.status_code == 200, response.text[:300]
        revealed.append(response.content)
        body = response.json()
        raw = records[index]["features"]
        assert {name: body["features"][name] for name in ("zip_code", "income",
                                                          "savings_balance")} == {
            name: raw[name] for name in ("zip_code", "income", "savings_balance")}
        assert body["unmasked"]["features"] == ["income", "savings_balance", "zip_code"]
    audit = await http.get("/v1/audit", params={"limit": 100}, headers=as_role("admin"))
    assert audit.status_code == 200
    unmasks = [e for e in audit.json()["entries"] if e["action"] == "trace.unmask"]
    assert sorted(e["request_id"] for e in unmasks) == sorted(checked)
    assert {(e["actor"], e["status"]) for e in unmasks} == {("audit-key", 200)}
    # The search above does find values where they are: in the unmasked answers.
    assert len(found_in(b"\n".join(revealed), secrets)) == 3 * UNMASKED_CHECKED
    first = [x for _, x in numbers[: 2 * UNMASKED_CHECKED]]
    assert len(near_numbers(b"\n".join(revealed), first)) == len(first)
    # The audit log names the features, never their values.
    assert found_in(audit.content, secrets) == []
    if backend == "sqlite":
        assert found_in(sqlite_corpus(tmp_path / "traces.db"), secrets) == []


async def test_served_manifest_shows_hashed_training_values_as_trace_pseudonyms(
        published_settings: Settings, credit_frame: pd.DataFrame, tmp_path: Path) -> None:
    root = Path(published_settings.artifacts_uri.removeprefix("file://"))
    published = json.loads((root / "models/credit/1/manifest.json").read_text())
    async with keyed_client(published_settings, tmp_path) as http:
        record = record_from(credit_frame, 3, "mf-1", context={"cohort": "canary"})
        assert (await http.post("/v1/predictions", json=record,
                                headers=as_role("ingest"))).json()["sampled"]
        trace = (await http.get("/v1/traces/mf-1", headers=as_role("read"))).json()
        answer = await http.get("/v1/models/credit/versions/1", headers=as_role("read"))
    assert answer.status_code == 200
    served = answer.json()["manifest"]
    features = {f["name"]: f for f in served["features"]}
    raw = {f["name"]: f for f in published["features"]}
    zips = features["zip_code"]["categories"]
    assert len(zips) == len(raw["zip_code"]["categories"])
    assert all(z.startswith("h:") for z in zips)
    # The same pseudonym a trace shows for that training value.
    assert trace["features"]["zip_code"] in zips
    frequencies = served["baseline"]["features"]["zip_code"]["frequencies"]
    assert all(key.startswith("h:") for key in frequencies)
    assert sum(frequencies.values()) == pytest.approx(
        sum(published["baseline"]["features"]["zip_code"]["frequencies"].values()))
    # Bucket edges define the ranges traces show; unmasked features are as published.
    assert (served["baseline"]["features"]["income"]["edges"]
            == published["baseline"]["features"]["income"]["edges"])
    assert features["purpose"] == raw["purpose"]
    assert served["masked_features"] == ["income", "savings_balance", "zip_code"]
