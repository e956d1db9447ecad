"""Pure computation for whylens: encodings, model adapters, SHAP explainers, drift profiles.

Arrays in, dataclasses out; no I/O. The service picks an explainer per model flavor
through `build_explainable`.
"""

from explainers.drift_stats import (
    CategoricalProfile,
    NumericProfile,
    profile_categorical,
    profile_numeric,
)
from explainers.encoding import (
    RowEncoder,
    decode_frame,
    decode_value,
    encode_frame,
    encode_rows,
)
from explainers.errors import (
    AdditivityViolation,
    EmptyBackground,
    ExplainerError,
    InputShapeMismatch,
    InvalidClassIndex,
    InvalidFeatureValue,
    MissingValueUnsupported,
    SchemaMismatch,
    ScoringFailure,
    UnsupportedModel,
)
from explainers.lightgbm_model import LightGBMModel, infer_lightgbm_schema
from explainers.lightgbm_trees import flatten_lightgbm
from explainers.linear import LinearExplainer
from explainers.permutation import PermutationExplainer
from explainers.protocols import Explainer, ScoringModel
from explainers.registry import Explainable, build_explainable, warm_up
from explainers.sklearn_model import SklearnModel
from explainers.sklearn_schema import infer_sklearn_schema
from explainers.sklearn_trees import flatten_sklearn_trees
from explainers.tree import LightGBMTreeExplainer, TreeEnsembleExplainer
from explainers.tree_ensemble import TreeEnsemble
from explainers.types import (
    CategoryValue,
    Explanation,
    FeatureKind,
    FeatureSpec,
    FloatMatrix,
    FloatVector,
    IntVector,
    ModelSchema,
    OutputSpace,
    Predictions,
    Task,
)

__all__ = [
    "AdditivityViolation",
    "CategoricalProfile",
    "CategoryValue",
    "EmptyBackground",
    "Explainable",
    "Explainer",
    "ExplainerError",
    "Explanation",
    "FeatureKind",
    "FeatureSpec",
    "FloatMatrix",
    "FloatVector",
    "InputShapeMismatch",
    "IntVector",
    "InvalidClassIndex",
    "InvalidFeatureValue",
    "LightGBMModel",
    "LightGBMTreeExplainer",
    "LinearExplainer",
    "MissingValueUnsupported",
    "ModelSchema",
    "NumericProfile",
    "OutputSpace",
    "PermutationExplainer",
    "Predictions",
    "RowEncoder",
    "SchemaMismatch",
    "ScoringFailure",
    "ScoringModel",
    "SklearnModel",
    "Task",
    "TreeEnsemble",
    "TreeEnsembleExplainer",
    "UnsupportedModel",
    "build_explainable",
    "decode_frame",
    "decode_value",
    "encode_frame",
    "encode_rows",
    "flatten_lightgbm",
    "flatten_sklearn_trees",
    "infer_lightgbm_schema",
    "infer_sklearn_schema",
    "profile_categorical",
    "profile_numeric",
    "warm_up",
]
