"""Sparse-first beam search over single-feature moves, then shrink, verify and diversify.

Level 1 evaluates every admissible move from the query; level L expands the most
promising partial states of level L-1 (largest progress, and largest progress per unit
of distance) with a move on a feature they have not changed yet. Candidates that reach
the target are re-scored through the model and checked against every constraint; only
those survive. The search stops at the first level that yields enough answers with
different feature sets, or at `max_changes` or the budget.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from explainers.counterfactual_goal import Goal
from explainers.counterfactual_moves import MoveEvaluator, MoveSet
from explainers.counterfactual_space import FeatureSpace, changed_mask
from explainers.counterfactual_values import round_to_scale
from explainers.types import FloatMatrix, FloatVector

# Partial states expanded per level.
BEAM_WIDTH = 16
# Reached candidates kept per level (best per feature set first).
POOL_PER_LEVEL = 64
# Candidates refined by the shrink pass, per answer asked.
SHRINK_PER_ANSWER = 1
# Values tried per changed feature and rounds when shrinking a change toward the query:
# tree outputs only change at thresholds (few exact values suffice); a continuous model
# needs a finer line search.
SHRINK_STEPS = {True: 8, False: 12}
SHRINK_ROUNDS = {True: 2, False: 4}


@dataclass(slots=True)
class Candidate:
    """A counterfactual row that passed the evaluator and the constraints, with rank keys."""

    row: FloatVector
    features: frozenset[int]
    distance: float

    @property
    def key(self) -> tuple[int, float]:
        return len(self.features), self.distance


@dataclass(slots=True)
class SearchOutcome:
    """Candidates that reach the target per the evaluator, best first, and the work done."""

    candidates: list[Candidate]
    evaluations: int
    rejected: int


class BeamSearch:
    """One query's search; construct, then `run()`."""

    def __init__(self, evaluator: MoveEvaluator, goal: Goal, space: FeatureSpace, *,
                 moves: MoveSet, integer: np.ndarray) -> None:
        self._evaluator = evaluator
        self._goal = goal
        self._space = space
        self._moves = moves
        self._integer = integer
        self._evaluations = 0
        self._rejected = 0

    def run(self, *, count: int, budget: int, max_changes: int) -> SearchOutcome:
        """Search level by level and return verified, shrunk candidates."""
        space, moves = self._space, self._moves
        states = space.x[None, :].copy()
        state_sets: list[frozenset[int]] = [frozenset()]
        state_distance = np.zeros(1)
        pool: list[Candidate] = []
        for _ in range(max_changes):
            affordable = (budget - self._evaluations) // max(len(moves), 1)
            if affordable < 1:
                break
            states, state_distance = states[:affordable], state_distance[:affordable]
            state_sets = state_sets[:affordable]
            state_values, values, out_space = self._evaluator.evaluate(states, moves)
            self._evaluations += len(states) * len(moves)
            progress = self._goal.progress(values, out_space)
            blocked = _blocked(state_sets, moves.features)
            progress[blocked] = -np.inf
            hit = self._goal.hit(progress) & self._space.relations_hold(
                states, moves.features, moves.values)
            total = state_distance[:, None] + moves.costs[None, :]
            pool.extend(self._verified(self._reached(states, state_sets, hit, total)))
            pool.sort(key=lambda c: c.key)
            if len(diverse(pool, count)) >= count:
                break
            base_progress = self._goal.progress(state_values, out_space)
            states, state_sets, state_distance = self._next_beam(
                states, state_sets, progress, base_progress, total, open_=~hit & ~blocked)
            if len(states) == 0:
                break
        shrunk = self._shrink(_shrink_set(pool, count * SHRINK_PER_ANSWER))
        merged = sorted(shrunk + pool, key=lambda c: c.key)
        return SearchOutcome(merged, self._evaluations, self._rejected)

    def _apply(self, states: FloatMatrix, s: np.ndarray, m: np.ndarray) -> FloatMatrix:
        rows: FloatMatrix = states[s].copy()
        rows[np.arange(len(s)), self._moves.features[m]] = self._moves.values[m]
        return rows

    def _reached(self, states: FloatMatrix, state_sets: list[frozenset[int]],
                 hit: np.ndarray, total: np.ndarray) -> list[tuple[FloatVector, frozenset[int]]]:
        s_idx, m_idx = np.nonzero(hit)
        order = np.argsort(total[s_idx, m_idx], kind="stable")
        s_idx, m_idx = s_idx[order], m_idx[order]
        features = self._moves.features
        picked: list[int] = []
        per_set: dict[frozenset[int], int] = {}
        for k in range(len(s_idx)):
            key = state_sets[s_idx[k]] | {int(features[m_idx[k]])}
            if per_set.get(key, 0) >= 2:
                continue
            per_set[key] = per_set.get(key, 0) + 1
            picked.append(k)
            if len(picked) >= POOL_PER_LEVEL:
                break
        rows = self._apply(states, s_idx[picked], m_idx[picked])
        return [(rows[i], state_sets[s_idx[k]] | {int(features[m_idx[k]])})
                for i, k in enumerate(picked)]

    def _verified(self, found: list[tuple[FloatVector, frozenset[int]]]) -> list[Candidate]:
        """Keep candidates that satisfy the constraints and reach the target when scored
        as whole rows (the model itself re-scores the final answers)."""
        if not found:
            return []
        # the evaluator's outputs for these rows are exact (they come from the same
        # evaluation as the hit); only the constraints remain to check
        rows = np.vstack([row for row, _ in found])
        ok = self._space.satisfied(rows)
        self._rejected += int((~ok).sum())
        distance = self._space.distance(rows)
        return [Candidate(rows[i], found[i][1], float(distance[i]))
                for i in np.flatnonzero(ok)]

    def _hits(self, rows: FloatMatrix) -> np.ndarray:
        values, out_space = self._evaluator.score(rows)
        return np.asarray(self._goal.hit(self._goal.progress(values, out_space)))

    def _next_beam(self, states: FloatMatrix, state_sets: list[frozenset[int]],
                   progress: np.ndarray, base_progress: np.ndarray, total: np.ndarray,
                   open_: np.ndarray) -> tuple[FloatMatrix, list[frozenset[int]], FloatVector]:
        s_all, m_all = np.nonzero(open_ & np.isfinite(progress))
        if s_all.size == 0:
            return states[:0], [], np.zeros(0)
        gain = progress[s_all, m_all]
        with np.errstate(invalid="ignore", divide="ignore"):
            efficiency = (gain - base_progress[s_all]) / (self._moves.costs[m_all] + 1e-12)
        by_gain = np.argsort(-gain, kind="stable")[:4 * BEAM_WIDTH]
        by_efficiency = np.argsort(-efficiency, kind="stable")[:4 * BEAM_WIDTH]
        chosen: list[int] = []
        per_set: dict[frozenset[int], int] = {}
        features = self._moves.features
        for ranking in _interleave(by_gain, by_efficiency):
            key = state_sets[s_all[ranking]] | {int(features[m_all[ranking]])}
            if per_set.get(key, 0) >= 2 or ranking in chosen:
                continue
            per_set[key] = per_set.get(key, 0) + 1
            chosen.append(int(ranking))
            if len(chosen) >= BEAM_WIDTH:
                break
        s_pick, m_pick = s_all[chosen], m_all[chosen]
        sets = [state_sets[s] | {int(features[m])} for s, m in zip(s_pick, m_pick, strict=True)]
        return self._apply(states, s_pick, m_pick), sets, total[s_pick, m_pick]

    def _shrink(self, candidates: list[Candidate]) -> list[Candidate]:
        """Move each changed feature back toward the query while the answer stays valid."""
        current = list(candidates)
        for _ in range(SHRINK_ROUNDS[self._evaluator.stepwise]):
            variants, owners = self._variants(current)
            if not variants:
                break
            rows = np.vstack(variants)
            ok = self._space.satisfied(rows) & self._hits(rows)
            self._evaluations += len(rows)
            distance = self._space.distance(rows)
            changed = changed_mask(rows, self._space.x)
            improved = False
            for i in np.flatnonzero(ok):
                owner = owners[i]
                better = Candidate(rows[i], frozenset(np.flatnonzero(changed[i]).tolist()),
                                   float(distance[i]))
                if better.key < current[owner].key:
                    current[owner] = better
                    improved = True
            if not improved:
                break
        return current

    def _variants(self, candidates: list[Candidate]) -> tuple[list[FloatVector], list[int]]:
        x = self._space.x
        variants: list[FloatVector] = []
        owners: list[int] = []
        for owner, candidate in enumerate(candidates):
            for j in sorted(candidate.features):
                for value in self._between(j, x[j], candidate.row[j]):
                    row = candidate.row.copy()
                    row[j] = value
                    variants.append(row)
                    owners.append(owner)
        return variants, owners

    def _between(self, j: int, start: float, end: float) -> FloatVector:
        """The query's value and values strictly between it and the candidate's."""
        if self._space.categorical[j] or np.isnan(start) or np.isnan(end):
            return np.array([start])
        moves = self._moves
        own = moves.values[moves.features == j]
        lo, hi = min(start, end), max(start, end)
        inside = own[(own > lo) & (own < hi)]
        steps_wanted = SHRINK_STEPS[self._evaluator.stepwise]
        if inside.size > steps_wanted:
            inside = np.sort(inside)[np.linspace(0, inside.size - 1, steps_wanted).astype(int)]
        if self._evaluator.stepwise:
            return np.unique(np.concatenate(([start], inside)))
        steps = start + (end - start) * np.arange(1, steps_wanted) / steps_wanted
        steps = round_to_scale(steps, np.full(steps.shape, self._space.scales[j]),
                               integer=np.full(steps.shape, bool(self._integer[j])))
        steps = steps[(steps > lo) & (steps < hi)]
        return np.unique(np.concatenate(([start], inside, steps)))


def diverse(candidates: list[Candidate], count: int) -> list[Candidate]:
    """Pick up to `count` candidates, best first, each with a new feature set.

    A candidate whose feature set contains an already picked one is skipped: it changes
    more than needed, and another value of the same features is no new answer. So the
    answer may hold fewer than `count` counterfactuals.
    """
    picked: list[Candidate] = []
    for candidate in candidates:
        if len(picked) >= count:
            break
        if not any(p.features <= candidate.features for p in picked):
            picked.append(candidate)
    return picked


def _shrink_set(pool: list[Candidate], size: int) -> list[Candidate]:
    """The best candidate of each of the first `size` feature sets."""
    seen: set[frozenset[int]] = set()
    picked = []
    for candidate in pool:
        if candidate.features not in seen:
            seen.add(candidate.features)
            picked.append(candidate)
            if len(picked) >= size:
                break
    return picked


def _blocked(state_sets: list[frozenset[int]], features: np.ndarray) -> np.ndarray:
    blocked = np.zeros((len(state_sets), features.shape[0]), dtype=bool)
    for s, used in enumerate(state_sets):
        if used:
            blocked[s] = np.isin(features, list(used))
    return blocked


def _interleave(a: np.ndarray, b: np.ndarray) -> list[int]:
    out: list[int] = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            out.append(int(a[i]))
        if i < len(b):
            out.append(int(b[i]))
    return out
