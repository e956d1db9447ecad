"""Counterfactual search: the smallest changes that make the model reach another decision.

Build a `CounterfactualSearcher` once per model version with
`build_counterfactual_searcher`; it picks the move evaluator by model kind (threshold
crossings through the flattened trees for LightGBM and scikit-learn tree ensembles, a
background-sample search for everything else). Every returned counterfactual has been
re-scored through `ScoringModel.predict` and checked against every constraint.
"""

from __future__ import annotations

import logging
import threading
import time

import numpy as np
from threadpoolctl import ThreadpoolController

from explainers.counterfactual_goal import SEARCHABLE_SPACES, Goal
from explainers.counterfactual_moves import MoveEvaluator, SampleMoves, TreeMoves
from explainers.counterfactual_search import BeamSearch, Candidate, diverse
from explainers.counterfactual_space import (
    FeatureSpace,
    changed_mask,
    feature_scales,
    integer_features,
    unweighted_distance,
)
from explainers.counterfactual_types import (
    Constraints,
    Counterfactual,
    CounterfactualRequest,
    CounterfactualResult,
    SearchStatus,
)
from explainers.encoding import checked_matrix, decode_value
from explainers.errors import CounterfactualRequestInvalid, UnsupportedModel
from explainers.lightgbm_model import LightGBMModel
from explainers.lightgbm_trees import flatten_lightgbm
from explainers.protocols import Explainer, ScoringModel
from explainers.sklearn_model import SklearnModel
from explainers.sklearn_trees import flatten_sklearn_trees, is_sklearn_tree_model
from explainers.tree import calibrate_offset
from explainers.tree_ensemble import TreeEnsemble
from explainers.types import FloatMatrix, FloatVector, ModelSchema, Predictions

logger = logging.getLogger(__name__)

# Times rejected answers are replaced by the next candidates before giving up.
_VERIFY_ROUNDS = 3


class CounterfactualSearcher:
    """Searches counterfactuals for one model version; read-only, safe to share."""

    def __init__(self, model: ScoringModel, evaluator: MoveEvaluator,
                 background: FloatMatrix) -> None:
        self.model = model
        self.evaluator = evaluator
        schema = model.schema
        self._background = checked_matrix(background, schema)
        self._scales = feature_scales(self._background, schema)
        self._integer = integer_features(self._background, schema)
        self._categorical = np.array([f.kind.value == "categorical" for f in schema.features])
        self._background_predictions: Predictions | None = (
            model.predict(self._background) if len(self._background) else None)
        self._threads = ThreadpoolController()

    def _predict(self, rows: FloatMatrix) -> Predictions:
        """Re-score a handful of rows through the model, on this thread alone.

        An OpenMP parallel region per call (LightGBM, HistGradientBoosting) costs far more
        than scoring four rows, and much more again on a busy machine; the limit is
        per thread, so concurrent requests keep their parallelism.
        """
        with self._threads.limit(limits=1, user_api="openmp"):
            return self.model.predict(rows)

    @property
    def method(self) -> str:
        """How candidates are proposed and evaluated (`tree_thresholds`, `sample_search`)."""
        return self.evaluator.method

    def search(self, x: FloatVector, request: CounterfactualRequest) -> CounterfactualResult:
        """Find up to `request.count` verified, diverse counterfactuals for one encoded row.

        Raises:
            CounterfactualRequestInvalid: the target or a constraint does not fit the model.
        """
        started = time.perf_counter()
        row = checked_matrix(np.asarray(x, dtype=np.float64).reshape(1, -1),
                             self.model.schema)[0]
        if request.count < 1:
            raise CounterfactualRequestInvalid("count", "must be at least 1")
        # The evaluator's view of the query (exact for trees) resolves the target; the
        # final model call re-scores the query with the answers and must agree.
        result = self._search(row, request, self.evaluator.predictions(row[None, :]),
                              started)
        if result is None:
            result = self._search(row, request, self._predict(row[None, :]), started)
        assert result is not None
        return result

    def _search(self, row: FloatVector, request: CounterfactualRequest, query: Predictions,
                started: float) -> CounterfactualResult | None:
        """Run one search; None when the model disagrees with the evaluator on the query."""
        schema = self.model.schema
        goal = Goal(request.target, schema, query)
        space = FeatureSpace(schema, row, request.constraints, scales=self._scales)

        def none_found(reason: str, evaluations: int = 0, rejected: int = 0
                       ) -> CounterfactualResult:
            return CounterfactualResult.none_found(
                reason, requested=request.count, method=self.method, target=goal.describe(),
                budget=request.budget, evaluations=evaluations, rejected=rejected,
                compute_ms=(time.perf_counter() - started) * 1000)

        if goal.reached(query)[0]:
            checked = self._predict(row[None, :])
            if Goal(request.target, schema, checked).describe() != goal.describe():
                return None
            if goal.reached(checked)[0]:
                return none_found("the query already reaches the target")
            return None
        moves = self.evaluator.moves(space)
        if len(moves) == 0:
            return none_found("no feature may change within the constraints")
        search = BeamSearch(self.evaluator, goal, space, moves=moves, integer=self._integer)
        outcome = search.run(count=request.count, budget=request.budget,
                             max_changes=min(request.max_changes, len(schema.features)))
        verified = self._verified_answers(outcome.candidates, request, goal, space)
        if verified is None:
            return None
        answers, rejected = verified
        rejected += outcome.rejected
        if not answers:
            return none_found(f"no valid counterfactual changing at most "
                              f"{request.max_changes} features within the constraints and "
                              f"a budget of {request.budget} evaluations",
                              outcome.evaluations, rejected)
        return CounterfactualResult(SearchStatus.FOUND, None, tuple(answers), request.count,
                                    self.method, goal.describe(), outcome.evaluations,
                                    request.budget, rejected,
                                    (time.perf_counter() - started) * 1000)

    def _verified_answers(self, candidates: list[Candidate], request: CounterfactualRequest,
                          goal: Goal, space: FeatureSpace
                          ) -> tuple[list[Counterfactual], int] | None:
        """Pick diverse candidates and re-score them (and the query) through the model.

        Rejected candidates are replaced by the next ones; None when the model resolves
        the query's target differently from the evaluator (a search from scratch follows).
        """
        answers: list[Counterfactual] = []
        rejected = 0
        remaining = list(candidates)
        for _ in range(_VERIFY_ROUNDS):
            chosen = diverse(remaining, request.count)
            rows = np.vstack([space.x[None, :], *[c.row[None, :] for c in chosen]])
            predictions = self._predict(rows)
            if Goal(request.target, self.model.schema,
                    _row(predictions, 0)).describe() != goal.describe():
                return None
            if not chosen:
                break
            answers, valid = self._describe(rows[1:], _tail(predictions), goal, space)
            if valid.all():
                return answers, rejected
            rejected += int((~valid).sum())
            dropped = {id(c) for c, ok in zip(chosen, valid, strict=True) if not ok}
            remaining = [c for c in remaining if id(c) not in dropped]
        return answers, rejected

    def _describe(self, rows: FloatMatrix, predictions: Predictions, goal: Goal,
                  space: FeatureSpace) -> tuple[list[Counterfactual], np.ndarray]:
        """Describe the rows whose model predictions reach the target within constraints."""
        valid = goal.reached(predictions) & space.satisfied(rows)
        changed = changed_mask(rows, space.x)
        distance = space.distance(rows)
        plausibility = self._plausibility(rows, goal)
        schema = self.model.schema
        answers = []
        for i in np.flatnonzero(valid):
            changes = {
                schema.features[j].name: (decode_value(schema.features[j], space.x[j]),
                                          decode_value(schema.features[j], rows[i, j]))
                for j in np.flatnonzero(changed[i])
            }
            answers.append(Counterfactual(
                row=rows[i], changes=changes, score=float(predictions.scores[i]),
                label=goal.label(predictions, int(i)), n_changed=len(changes),
                distance=float(distance[i]),
                plausibility=None if plausibility is None else float(plausibility[i])))
        return answers, valid

    def _plausibility(self, rows: FloatMatrix, goal: Goal) -> FloatVector | None:
        if self._background_predictions is None:
            return None
        targets = self._background[goal.reached(self._background_predictions)]
        if len(targets) == 0:
            return None
        distances = unweighted_distance(rows, targets, scales=self._scales,
                                        categorical=self._categorical)
        return np.asarray(distances.min(axis=1), dtype=np.float64)


def _row(predictions: Predictions, i: int) -> Predictions:
    """One row of a batch of predictions."""
    return _rows(predictions, slice(i, i + 1))


def _tail(predictions: Predictions) -> Predictions:
    """All rows but the first."""
    return _rows(predictions, slice(1, None))


def _rows(predictions: Predictions, at: slice) -> Predictions:
    probabilities = predictions.probabilities
    classes = predictions.class_indices
    return Predictions(predictions.scores[at],
                       None if probabilities is None else probabilities[at],
                       None if classes is None else classes[at])


def check_constraints(schema: ModelSchema, constraints: Constraints) -> None:
    """Check names, ranges, categories, weights and relations against the schema.

    Raises:
        CounterfactualRequestInvalid: naming the offending field.
    """
    m = len(schema.features)
    FeatureSpace(schema, np.zeros(m), constraints, scales=np.ones(m))


def build_counterfactual_searcher(model: ScoringModel, background: FloatMatrix, *,
                                  explainer: Explainer | None = None
                                  ) -> CounterfactualSearcher:
    """Pick the move evaluator for the model: its trees when they can be read, else samples.

    LightGBM boosters and scikit-learn tree models are flattened here and calibrated
    against the model (an explainer exposing a calibrated `ensemble` lends it instead);
    anything the flattening cannot reproduce gets the sample search.
    """
    background = checked_matrix(background, model.schema)
    scales = feature_scales(background, model.schema)
    integer = integer_features(background, model.schema)
    ensemble = _tree_ensemble(model, explainer, background)
    evaluator: MoveEvaluator
    if ensemble is not None:
        try:
            evaluator = TreeMoves(ensemble, model, scales=scales,  # type: ignore[arg-type]
                                  integer=integer)
        except UnsupportedModel as exc:
            logger.info("counterfactuals fall back to the sample search: %s", exc)
            evaluator = SampleMoves(model, background)
    else:
        evaluator = SampleMoves(model, background)
    return CounterfactualSearcher(model, evaluator, background)


def _tree_ensemble(model: ScoringModel, explainer: Explainer | None,
                   background: FloatMatrix) -> TreeEnsemble | None:
    """The model's flattened trees, calibrated against the model, or None."""
    spaces = SEARCHABLE_SPACES[model.schema.task]
    if model.output_space not in spaces or not hasattr(model, "numeric_input"):
        return None
    lent = getattr(explainer, "ensemble", None)
    if isinstance(lent, TreeEnsemble):
        return lent
    try:
        if isinstance(model, LightGBMModel):
            if model.header.linear_tree:
                return None
            ensemble = flatten_lightgbm(model.booster, model.output_space)
        elif isinstance(model, SklearnModel) and is_sklearn_tree_model(model.estimator):
            ensemble = flatten_sklearn_trees(model.estimator)
            positions = getattr(model, "schema_positions", None)
            if positions is not None:
                ensemble = ensemble.with_feature_positions(positions)
        else:
            return None
        if ensemble.output_space is not model.output_space:
            return None
        return calibrate_offset(ensemble, model, probe=background)
    except UnsupportedModel as exc:
        logger.info("counterfactuals fall back to the sample search: %s", exc)
        return None


class DeferredSearcher:
    """Builds a model's searcher on first use, once, from any thread.

    Flattening a large booster takes up to a second, which model loading (and the
    sampled-ingest path, which asks for no counterfactuals) should not pay for.
    """

    def __init__(self, model: ScoringModel, background: FloatMatrix, *,
                 explainer: Explainer | None = None) -> None:
        self._model = model
        self._background = background
        self._explainer = explainer
        self._searcher: CounterfactualSearcher | None = None
        self._lock = threading.Lock()

    def get(self) -> CounterfactualSearcher:
        """Return the searcher, building it on the first call."""
        searcher = self._searcher
        if searcher is not None:
            return searcher
        with self._lock:
            if self._searcher is None:
                self._searcher = build_counterfactual_searcher(
                    self._model, self._background, explainer=self._explainer)
            return self._searcher
