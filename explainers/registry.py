"""Model flavor → builder of the scoring model and its explainer (one table row per flavor)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Protocol

import lightgbm

from explainers.encoding import checked_matrix
from explainers.errors import UnsupportedModel
from explainers.lightgbm_model import LightGBMModel
from explainers.linear import LinearExplainer, is_linear_model, linear_output_space
from explainers.permutation import PermutationExplainer
from explainers.protocols import Explainer, ScoringModel
from explainers.sklearn_model import SklearnModel
from explainers.sklearn_trees import flatten_sklearn_trees, is_sklearn_tree_model
from explainers.tree import LightGBMTreeExplainer, TreeEnsembleExplainer
from explainers.treeshap_kernel import warm_up as _warm_up_kernel
from explainers.types import FloatMatrix, ModelSchema

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Explainable:
    """A loaded model and the explainer whose attributions add up to its output."""

    model: ScoringModel
    explainer: Explainer


class Builder(Protocol):
    """Builds the explainable model of one flavor."""

    def __call__(self, model_object: object, schema: ModelSchema, *, background: FloatMatrix,
                 seed: int) -> Explainable:
        """Wrap the model object and choose its explainer."""
        ...


def build_lightgbm(model_object: object, schema: ModelSchema, *, background: FloatMatrix,
                   seed: int) -> Explainable:
    """LightGBM booster (or its scikit-learn wrapper) → native TreeSHAP."""
    booster = getattr(model_object, "booster_", model_object)
    if not isinstance(booster, lightgbm.Booster):
        raise UnsupportedModel(type(model_object).__name__, "not a LightGBM booster")
    model = LightGBMModel(booster, schema)
    try:
        return Explainable(model, LightGBMTreeExplainer(model))
    except UnsupportedModel as exc:
        logger.info("falling back to permutation SHAP: %s", exc)
        return Explainable(model, PermutationExplainer(model, background, seed=seed))


def build_sklearn(model_object: object, schema: ModelSchema, *, background: FloatMatrix,
                  seed: int) -> Explainable:
    """Tree models → our TreeSHAP kernel; linear models → linear SHAP; else permutation."""
    if is_sklearn_tree_model(model_object):
        try:
            ensemble = flatten_sklearn_trees(model_object)
            model = SklearnModel(model_object, schema, output_space=ensemble.output_space)
            if model.schema_positions is not None:
                ensemble = ensemble.with_feature_positions(model.schema_positions)
            return Explainable(model, TreeEnsembleExplainer(ensemble, model, probe=background))
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
                      background: FloatMatrix, seed: int = 0) -> Explainable:
    """Wrap a loaded model object and pick its explainer by flavor.

    Raises:
        UnsupportedModel: unknown flavor, or an object the flavor cannot handle.
        SchemaMismatch: the model and the schema disagree.
    """
    builder = BUILDERS.get(flavor)
    if builder is None:
        raise UnsupportedModel(flavor, f"unknown flavor (known: {', '.join(sorted(BUILDERS))})")
    return builder(model_object, schema, background=checked_matrix(background, schema),
                   seed=seed)


def warm_up() -> None:
    """Compile the TreeSHAP kernels now, so the first explanation does not wait for numba."""
    _warm_up_kernel()
