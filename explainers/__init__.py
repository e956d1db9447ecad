"""Pure computation for whylens: encodings, model adapters, SHAP explainers, drift profiles.

Arrays in, dataclasses out; no I/O. The service picks an explainer per model flavor
through `build_explainable`.
"""

from explainers.counterfactual import (
    CounterfactualSearcher,
    DeferredSearcher,
    build_counterfactual_searcher,
)
from explainers.counterfactual_types import (
    ClassTarget,
    Constraints,
    Counterfactual,
    CounterfactualRequest,
    CounterfactualResult,
    Direction,
    IntervalTarget,
    LabelTarget,
    Relation,
    SearchStatus,
)
from explainers.drift_binned import (
    BinnedDistribution,
    bin_distribution,
    rebin,
    wasserstein_binned,
)
from explainers.drift_rules import (
    DriftThresholds,
    Evidence,
    Verdict,
    is_stale,
    judge,
    judge_labels,
)
from explainers.drift_stats import (
    BaselineCdf,
    CategoricalProfile,
    NumericProfile,
    calibration_error,
    chi_square_p,
    excess_rate_p,
    js_distance,
    profile_categorical,
    profile_numeric,
    psi,
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
    CounterfactualRequestInvalid,
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
from explainers.prediction_links import PredictingExplainer, predict_and_explain
from explainers.protocols import Explainer, ScoringModel
from explainers.registry import Explainable, build_explainable, warm_up
from explainers.sklearn_model import SklearnModel
from explainers.sklearn_schema import infer_sklearn_schema
from explainers.sklearn_trees import flatten_sklearn_trees
from explainers.tree import LightGBMTreeExplainer, TreeEnsembleExplainer
from explainers.tree_ensemble import TreeEnsemble
from explainers.tree_linear import LinearTreeExplainer
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
    "BaselineCdf",
    "BinnedDistribution",
    "CategoricalProfile",
    "CategoryValue",
    "ClassTarget",
    "Constraints",
    "Counterfactual",
    "CounterfactualRequest",
    "CounterfactualRequestInvalid",
    "CounterfactualResult",
    "CounterfactualSearcher",
    "DeferredSearcher",
    "Direction",
    "DriftThresholds",
    "EmptyBackground",
    "Evidence",
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
    "IntervalTarget",
    "InvalidClassIndex",
    "InvalidFeatureValue",
    "LabelTarget",
    "LightGBMModel",
    "LightGBMTreeExplainer",
    "LinearExplainer",
    "LinearTreeExplainer",
    "MissingValueUnsupported",
    "ModelSchema",
    "NumericProfile",
    "OutputSpace",
    "PermutationExplainer",
    "PredictingExplainer",
    "Predictions",
    "Relation",
    "RowEncoder",
    "SchemaMismatch",
    "ScoringFailure",
    "ScoringModel",
    "SearchStatus",
    "SklearnModel",
    "Task",
    "TreeEnsemble",
    "TreeEnsembleExplainer",
    "UnsupportedModel",
    "Verdict",
    "bin_distribution",
    "build_counterfactual_searcher",
    "build_explainable",
    "calibration_error",
    "chi_square_p",
    "decode_frame",
    "decode_value",
    "encode_frame",
    "encode_rows",
    "excess_rate_p",
    "flatten_lightgbm",
    "flatten_sklearn_trees",
    "infer_lightgbm_schema",
    "infer_sklearn_schema",
    "is_stale",
    "js_distance",
    "judge",
    "judge_labels",
    "predict_and_explain",
    "profile_categorical",
    "profile_numeric",
    "psi",
    "rebin",
    "warm_up",
    "wasserstein_binned",
]
