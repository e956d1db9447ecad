"""The sampling engine of one replica: per-model policies, incident mode, budgets."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from service.errors import PolicyUnreadable
from service.sampling.budget import TokenBucket
from service.sampling.document import INCIDENT_REASON, PolicyDocument
from service.sampling.policy import SamplingDecision, default_policy_document
from service.sampling.rules import CompiledPolicy
from service.sampling.store import PolicyStore, StoredPolicy
from service.settings import Settings
from service.validation import Envelope
from storage.budget_factory import open_explanation_budget
from storage.errors import StorageError
from storage.incidents.records import StoredIncident
from storage.protocols import ArtifactStore, ExplanationBudget

logger = logging.getLogger(__name__)

DEFAULT_VERSION = "default"


class SamplingMetrics:
    """The engine's counters, registered on the app's registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.deferred = Counter(
            "whylens_sampling_deferred_total",
            "Records a rule sampled but the explanation budget deferred, by model and reason",
            ["model", "reason"], registry=registry)
        self.rule_errors = Counter(
            "whylens_policy_rule_errors_total",
            "Rule expressions that failed on a record (counted as no match)",
            ["model", "rule"], registry=registry)
        self.load_errors = Counter(
            "whylens_policy_load_errors_total", "Published policies that could not be read",
            ["model"], registry=registry)
        self.budget_errors = Counter(
            "whylens_sampling_budget_errors_total",
            "Shared budget calls that failed (this replica's bucket decided instead)",
            ["model"], registry=registry)
        self.version = Gauge(
            "whylens_policy_version", "Published policy version in force (0: the default)",
            ["model"], registry=registry)


def record_view(envelope: Envelope, model: str, version: str) -> dict[str, Any]:
    """The JMESPath input of a record."""
    return {"features": envelope.features, "prediction": envelope.prediction,
            "context": envelope.context, "action": envelope.action, "model": model,
            "version": version}


class SamplingEngine:
    """Decides per record; policies and incident mode are refreshed in the background."""

    def __init__(self, store: PolicyStore, default: PolicyDocument, metrics: SamplingMetrics,
                 *, clock: Callable[[], float] = time.monotonic,
                 shared: ExplanationBudget | None = None) -> None:
        self.store = store
        self._shared = shared
        self._default = default
        self._metrics = metrics
        self._clock = clock
        self._policies: dict[str, CompiledPolicy] = {}
        self._checked: set[str] = set()
        self._incidents: dict[str, tuple[str, ...]] = {}
        self._buckets: dict[str, TokenBucket] = {}

    @property
    def default_document(self) -> PolicyDocument:
        """The policy of models without a published one."""
        return self._default

    def policy(self, model: str) -> CompiledPolicy:
        """The policy in force for a model (the default until a published one is read)."""
        policy = self._policies.get(model)
        if policy is None:
            policy = self._install(model, DEFAULT_VERSION, self._default)
        return policy

    def incident_mode(self, model: str) -> tuple[str, ...]:
        """The open `explain_all` incidents of a model (empty: not in incident mode)."""
        return self._incidents.get(model, ())

    def decide(self, envelope: Envelope, model: str, version: str) -> SamplingDecision:
        """Decide for one validated record of a resolved model version (this replica's
        bucket; `decide_all` uses the shared one when there is one)."""
        decision = self._choose(envelope, model, version)
        if self._needs_token(model, decision):
            bucket = self._buckets[model]
            if not bucket.take():
                return self._defer(model, decision)
        return decision

    async def decide_all(self, records: Sequence[tuple[Envelope, str, str]]
                         ) -> list[SamplingDecision]:
        """Decide for (record, model, version) triples; the budget is taken per model in
        one round trip from the shared bucket, else from this replica's."""
        if self._shared is None:
            return [self.decide(*record) for record in records]
        decisions = [self._choose(*record) for record in records]
        waiting: dict[str, list[int]] = {}
        for index, ((_, model, _), decision) in enumerate(zip(records, decisions,
                                                              strict=True)):
            if self._needs_token(model, decision):
                waiting.setdefault(model, []).append(index)
        for model, indexes in waiting.items():
            granted = await self._take_shared(model, len(indexes))
            # Input order decides who gets the tokens, as with one record at a time.
            for index in indexes[granted:]:
                decisions[index] = self._defer(model, decisions[index])
        return decisions

    async def close(self) -> None:
        """Release the shared budget's connections."""
        if self._shared is not None:
            await self._shared.close()

    def _choose(self, envelope: Envelope, model: str, version: str) -> SamplingDecision:
        policy = self.policy(model)
        incidents = self._incidents.get(model)
        if incidents:
            return SamplingDecision(True, INCIDENT_REASON, policy.label,
                                    counterfactuals=policy.incident_counterfactuals,
                                    incidents=incidents)
        view = record_view(envelope, model, version) if policy.reads_record else None
        return policy.decide(envelope.request_id, view, on_error=policy.count_error)

    def _needs_token(self, model: str, decision: SamplingDecision) -> bool:
        return (decision.sampled and model in self._buckets
                and decision.reason not in self.policy(model).exempt)

    def _defer(self, model: str, decision: SamplingDecision) -> SamplingDecision:
        self._metrics.deferred.labels(model, decision.reason or "").inc()
        return SamplingDecision(False, decision.reason, decision.policy, deferred=True)

    async def _take_shared(self, model: str, count: int) -> int:
        assert self._shared is not None
        bucket = self._buckets[model]
        try:
            return await self._shared.take_tokens(model, count, rate=bucket.rate,
                                                  capacity=bucket.capacity)
        except StorageError as exc:
            # Never fail ingest over the budget: this replica's bucket decides meanwhile.
            self._metrics.budget_errors.labels(model).inc()
            logger.error("shared explanation budget of %s unavailable, using this "
                         "replica's: %s", model, exc)
            return sum(1 for _ in range(count) if bucket.take())

    async def ensure_loaded(self, model: str) -> None:
        """Read the model's published policy once, the first time the model is seen."""
        if model not in self._checked:
            await self.refresh_model(model)

    async def refresh_model(self, model: str) -> None:
        """Re-read the model's published policy and switch when its version changed.

        A policy that cannot be read leaves the one in force (or the default) and is
        counted; the next refresh tries again.
        """
        try:
            stored = await self.store.current(model)
        except (StorageError, PolicyUnreadable) as exc:
            self._metrics.load_errors.labels(model).inc()
            logger.error("cannot read the sampling policy of %s: %s", model, exc)
            self._checked.add(model)
            return
        self._checked.add(model)
        self.use(model, stored)

    async def refresh_all(self, models: Iterable[str] = ()) -> None:
        """Refresh every model seen so far and the given ones."""
        for model in sorted(self._checked | set(models)):
            await self.refresh_model(model)

    def use(self, model: str, stored: StoredPolicy | None) -> CompiledPolicy:
        """Put a published policy (None: the default) in force unless it already is."""
        version = DEFAULT_VERSION if stored is None else str(stored.version)
        current = self._policies.get(model)
        if current is not None and current.version == version:
            return current
        document = self._default if stored is None else stored.document
        policy = self._install(model, version, document)
        logger.info("sampling policy %s in force", policy.label)
        return policy

    def set_open_incidents(self, incidents: Iterable[StoredIncident]) -> None:
        """Replace the incident-mode table with the open `explain_all` incidents."""
        table: dict[str, list[str]] = {}
        for incident in sorted(incidents, key=lambda i: (i.opened_ms, i.incident_id)):
            if incident.is_open and incident.explain_all:
                table.setdefault(incident.model, []).append(incident.incident_id)
        self._incidents = {model: tuple(ids) for model, ids in table.items()}

    def open_incident(self, incident: StoredIncident) -> None:
        """Enter incident mode now in this replica (others follow within a refresh)."""
        if incident.explain_all and incident.is_open:
            ids = self._incidents.get(incident.model, ())
            if incident.incident_id not in ids:
                self._incidents[incident.model] = (*ids, incident.incident_id)

    def close_incident(self, incident: StoredIncident) -> None:
        """Leave incident mode for this incident now in this replica."""
        ids = tuple(i for i in self._incidents.get(incident.model, ())
                    if i != incident.incident_id)
        if ids:
            self._incidents[incident.model] = ids
        else:
            self._incidents.pop(incident.model, None)

    def _install(self, model: str, version: str, document: PolicyDocument) -> CompiledPolicy:
        errors = self._metrics.rule_errors
        policy = CompiledPolicy(model, version, document,
                                on_error=lambda rule: errors.labels(model, str(rule)).inc())
        self._policies[model] = policy
        budget = document.budget
        if budget is None:
            self._buckets.pop(model, None)
        else:
            bucket = self._buckets.get(model)
            if bucket is None:
                self._buckets[model] = TokenBucket(budget.per_second, budget.capacity,
                                                   clock=self._clock)
            elif (bucket.rate, bucket.capacity) != (budget.per_second, budget.capacity):
                self._buckets[model] = bucket.resized(budget.per_second, budget.capacity)
        self._metrics.version.labels(model).set(0 if version == DEFAULT_VERSION
                                                else float(version))
        return policy


def build_sampling_engine(settings: Settings, artifacts: ArtifactStore,
                          registry: CollectorRegistry) -> SamplingEngine:
    """The engine of one replica: published policies, else the settings' default; budgets
    shared by the replicas when the trace store is Redis."""
    store = PolicyStore(artifacts, max_counterfactuals=settings.limits.counterfactuals)
    shared = open_explanation_budget(settings.traces_url, key_prefix=settings.redis_key_prefix)
    return SamplingEngine(store, default_policy_document(settings.sampling),
                          SamplingMetrics(registry), shared=shared)
