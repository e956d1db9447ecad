"""Model flavor → builder of the scoring model and its explainer (one table row per flavor)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import lightgbm
import numba

from explainers.encoding import checked_matrix
from explainers.errors import UnsupportedModel
from explainers.lightgbm_model import LightGBMModel
from explainers.lightgbm_trees import flatten_lightgbm
from explainers.linear import LinearExplainer, is_linear_model, linear_output_space
from explainers.permutation import PermutationExplainer
from explainers.protocols import Explainer, ScoringModel
from explainers.sklearn_model import SklearnModel
from explainers.sklearn_trees import flatten_sklearn_trees, is_sklearn_tree_model
from explainers.tree import LightGBMTreeExplainer, TreeEnsembleExplainer
from explainers.tree_linear import LinearTreeExplainer
from explainers.treeshap_fast import available_cores
from explainers.treeshap_fast import warm_up as _warm_up_linear
from explainers.treeshap_kernel import warm_up as _warm_up_classic
from explainers.types import FloatMatrix, ModelSchema

logger = logging.getLogger(__name__)

# TreeSHAP kernels a service can choose (settings: explain.tree_kernel).
LINEAR_KERNEL = "linear"
REFERENCE_KERNEL = "reference"
TREE_KERNELS = (LINEAR_KERNEL, REFERENCE_KERNEL)


@dataclass(frozen=True, slots=True)
class Explainable:
    """A loaded model and the explainer whose attributions add up to its output."""

    model: ScoringModel
    explainer: Explainer


class Builder(Protocol):
    """Builds the explainable model of one flavor."""

    def __call__(self, model_object: object, schema: ModelSchema, *, background: FloatMatrix,
                 seed: int, memory_budget: int | None, tree_kernel: str) -> Explainable:
        """Wrap the model object and choose its explainer."""
        ...


def build_lightgbm(model_object: object, schema: ModelSchema, *, background: FloatMatrix,
                   seed: int, memory_budget: int | None, tree_kernel: str) -> Explainable:
    """LightGBM booster (or its scikit-learn wrapper) → linear TreeSHAP on its flat trees.

    Falls back to LightGBM's own pred_contrib (also the `reference` kernel) when the trees
    cannot be flattened faithfully, and to permutation SHAP for linear trees.
    """
    booster = getattr(model_object, "booster_", model_object)
    if not isinstance(booster, lightgbm.Booster):
        raise UnsupportedModel(type(model_object).__name__, "not a LightGBM booster")
    model = LightGBMModel(booster, schema)
    try:
        if model.header.linear_tree:
            raise UnsupportedModel("lightgbm.Booster", "linear trees have no flat form")
        if tree_kernel == REFERENCE_KERNEL:
            raise UnsupportedModel("lightgbm.Booster", "the reference kernel was chosen")
        ensemble = flatten_lightgbm(booster, model.output_space)
        explainer = LinearTreeExplainer(ensemble, model, probe=background,
                                        memory_budget=memory_budget)
        return Explainable(model, explainer)
    except UnsupportedModel as exc:
        logger.info("falling back to LightGBM's pred_contrib: %s", exc)
    try:
        return Explainable(model, LightGBMTreeExplainer(model))
    except UnsupportedModel as exc:
        logger.info("falling back to permutation SHAP: %s", exc)
        return Explainable(model, PermutationExplainer(model, background, seed=seed))


def build_sklearn(model_object: object, schema: ModelSchema, *, background: FloatMatrix,
                  seed: int, memory_budget: int | None, tree_kernel: str) -> Explainable:
    """Tree models → linear TreeSHAP (or the classic kernel, the `reference` one); linear
    models → linear SHAP; else permutation."""
    if is_sklearn_tree_model(model_object):
        try:
            ensemble = flatten_sklearn_trees(model_object)
            model = SklearnModel(model_object, schema, output_space=ensemble.output_space)
            if model.schema_positions is not None:
                ensemble = ensemble.with_feature_positions(model.schema_positions)
            if tree_kernel == REFERENCE_KERNEL:
                return Explainable(model, TreeEnsembleExplainer(ensemble, model,
                                                                probe=background))
            explainer = LinearTreeExplainer(ensemble, model, probe=background,
                                            memory_budget=memory_budget)
            return Explainable(model, explainer)
        except UnsupportedModel as exc:
            logger.info("falling back to permutation SHAP: %s", exc)
    elif is_linear_model(model_object):
        space = linear_output_space(model_object, schema.task)
        model = SklearnModel(model_object, schema, output_space=space)
        return Explainable(model, LinearExplainer(model, background))
    model = SklearnModel(model_object, schema)
    return Explainable(model, PermutationExplainer(model, background, seed=seed))


BUILDERS: Mapping[str, Builder] = MappingProxyType({
    "lightgbm": build_lightgbm,
    "sklearn": build_sklearn,
})


def build_explainable(flavor: str, model_object: object, schema: ModelSchema, *,
                      background: FloatMatrix, seed: int = 0,
                      memory_budget: int | None = None,
                      tree_kernel: str = LINEAR_KERNEL) -> Explainable:
    """Wrap a loaded model object and pick its explainer by flavor.

    `memory_budget` bounds the bytes of a tree model's compiled representation (see
    `tree_linear.memory_budget`); None leaves it unbounded. `tree_kernel` is
    LINEAR_KERNEL, or REFERENCE_KERNEL for the previous TreeSHAP (LightGBM's pred_contrib,
    the classic kernel for scikit-learn trees).

    Raises:
        UnsupportedModel: unknown flavor, or an object the flavor cannot handle.
        SchemaMismatch: the model and the schema disagree.
    """
    if tree_kernel not in TREE_KERNELS:
        raise UnsupportedModel(flavor, f"unknown tree kernel {tree_kernel!r}")
    builder = BUILDERS.get(flavor)
    if builder is None:
        raise UnsupportedModel(flavor, f"unknown flavor (known: {', '.join(sorted(BUILDERS))})")
    return builder(model_object, schema, background=checked_matrix(background, schema),
                   seed=seed, memory_budget=memory_budget, tree_kernel=tree_kernel)


def warm_up() -> float:
    """Compile the TreeSHAP kernels now, or load them from numba's on-disk cache.

    The first explanation then does not wait for numba. Returns the milliseconds taken.
    """
    started = time.perf_counter()
    _warm_up_classic()
    _warm_up_linear()
    elapsed = (time.perf_counter() - started) * 1000
    cache = numba.config.CACHE_DIR or "__pycache__ beside the modules"  # type: ignore[attr-defined]
    logger.info("TreeSHAP kernels ready in %.0f ms (numba cache: %s; batches use %d cores)",
                elapsed, cache, available_cores())
    return elapsed
