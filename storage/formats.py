"""Parse verified model and background bytes; nothing here can execute code on load.

Call these only on bytes whose sha256 (and signature, when keys are configured) the
catalog has verified. Pickle, joblib and cloudpickle are never used: LightGBM loads
from its text format, scikit-learn through skops with an explicit trusted-type list,
background samples from Parquet.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Sequence
from typing import Any

import lightgbm
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import skops.io

from storage.errors import ModelFormatInvalid, UntrustedModelType

DEFAULT_TRUSTED_TYPES: tuple[str, ...] = (
    # Reported by skops 0.16 `get_untrusted_types` for the supported models
    # (HistGradientBoosting*, RandomForest*, ExtraTrees*, GradientBoosting*,
    # DecisionTree*, linear models, Pipeline, ColumnTransformer, scalers, encoders,
    # SimpleImputer), found by dumping each fitted model; see tests/unit/storage/
    # test_formats.py, which fails when a supported model needs a type not listed here.
    #
    # Raw node storage of every sklearn tree model (DecisionTree*, RandomForest*,
    # ExtraTrees*, GradientBoosting*). skops refuses it by default because predict()
    # indexes nodes without bounds checks; `check_tree_structures` validates the
    # indices after loading.
    "sklearn.tree._tree.Tree",
    # Per-iteration trees of HistGradientBoosting*; same caveat, same check.
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    # SimpleImputer keeps the dtype it was fitted on; skops restores it from an empty
    # .npy array loaded with allow_pickle=False.
    "numpy.dtype",
    # HistGradientBoosting* with categorical features (including the default
    # categorical_features="from_dtype" on a DataFrame with category columns) keeps a
    # ColumnTransformer whose numeric branch is FunctionTransformer(partial(check_array)).
    # Trusting `partial` is safe only because skops still audits the wrapped callable
    # and its arguments as separate nodes: partial(<untrusted function>) is refused.
    "functools.partial",
    "sklearn.utils.validation.check_array",
    # Loss, link and binning objects of HistGradientBoosting*/GradientBoosting*. skops
    # 0.16 trusts them by default; older skops (pyproject allows >= 0.10) reports them,
    # so they are listed explicitly. These are exactly the types present in dumps.
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.link.HalfLogitLink",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.Interval",
    "sklearn._loss.link.LogLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.AbsoluteError",
    "sklearn._loss.loss.ExponentialLoss",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfGammaLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn._loss.loss.HalfPoissonLoss",
    "sklearn._loss.loss.HalfSquaredError",
    "sklearn._loss.loss.HuberLoss",
    "sklearn._loss.loss.PinballLoss",
)
"""Types allowed in a skops file beyond skops' own defaults, listed literally."""

_ZIP_MAGIC = b"PK\x03\x04"
_PICKLE_PROTOCOL_MARK = 0x80
_LIGHTGBM_HEADER = b"tree\n"
# Exceptions skops raises on a malformed archive or schema (never on a well-formed one);
# BadZipFile is not an OSError, and a deeply nested crafted schema ends in RecursionError.
_SKOPS_ERRORS = (
    zipfile.BadZipFile, OSError, ValueError, TypeError, KeyError, AttributeError, ImportError,
    IndexError, RecursionError,
)


def parse_lightgbm(data: bytes, *, key: str = "model.txt") -> lightgbm.Booster:
    """Load a LightGBM model from its text format (`Booster.save_model` output)."""
    if not data.startswith(_LIGHTGBM_HEADER):
        raise ModelFormatInvalid(key, _describe_foreign(data, expected="a LightGBM text model"))
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ModelFormatInvalid(key, "LightGBM text model is not UTF-8") from exc
    try:
        return lightgbm.Booster(model_str=text)
    except lightgbm.basic.LightGBMError as exc:
        raise ModelFormatInvalid(key, f"LightGBM refused the model: {exc}") from exc


def parse_skops(
    data: bytes, *, key: str, trusted: Sequence[str] = DEFAULT_TRUSTED_TYPES
) -> Any:
    """Load a scikit-learn model from skops bytes, refusing any type not trusted.

    Trusted = skops' defaults (builtins, numpy/scipy basics, public sklearn estimators)
    plus `trusted`. Raises `UntrustedModelType` naming every other type found, and
    `ModelFormatInvalid` when the bytes are not a skops archive or a tree in it is
    malformed.
    """
    if not data.startswith(_ZIP_MAGIC):
        raise ModelFormatInvalid(key, _describe_foreign(data, expected="a skops archive"))
    allowed = set(trusted)
    try:
        untrusted = skops.io.get_untrusted_types(data=data)
    except _SKOPS_ERRORS as exc:
        raise ModelFormatInvalid(key, f"not a readable skops archive ({exc})") from exc
    refused = sorted(t for t in untrusted if t not in allowed)
    if refused:
        raise UntrustedModelType(key, refused)
    try:
        model = skops.io.loads(data, trusted=sorted(allowed))
    except _SKOPS_ERRORS as exc:
        raise ModelFormatInvalid(key, f"skops could not rebuild the model ({exc})") from exc
    _check_tree_structures(model, key=key)
    return model


def parse_background(data: bytes, *, key: str = "background.parquet") -> pd.DataFrame:
    """Read the background sample from Parquet bytes."""
    try:
        table = pq.read_table(pa.BufferReader(data))
        return table.to_pandas()
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise ModelFormatInvalid(key, f"not a readable Parquet file ({exc})") from exc


def serialize_background(df: pd.DataFrame) -> bytes:
    """Write the background sample as Parquet bytes (the row index is not kept)."""
    buffer = io.BytesIO()
    df.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def _describe_foreign(data: bytes, *, expected: str) -> str:
    if data[:1] == bytes([_PICKLE_PROTOCOL_MARK]) or data.startswith(b"\x80\x02cjoblib"):
        return f"expected {expected}; this looks like pickle/joblib, which is never loaded"
    if data.startswith(_ZIP_MAGIC):
        return f"expected {expected}; this is a zip archive"
    if not data:
        return f"expected {expected}; the file is empty"
    return f"expected {expected}; unrecognised content"


# Type names (not imports: both live in private sklearn modules) of the node storages
# whose indices sklearn trusts blindly at predict time.
_TREE = "sklearn.tree._tree.Tree"
_PREDICTOR = "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"
_PREDICTOR_FIELDS = ("feature_idx", "left", "right", "is_leaf", "is_categorical", "bitset_idx")


def _check_tree_structures(model: object, *, key: str) -> None:
    """Refuse trees whose child or feature indices would read outside their arrays.

    Defense in depth behind the digest and signature checks: skops can check types but
    not that a Tree's node indices are in range, and sklearn's predict does not either.
    Children must come after their parent (which also rules out cycles) and features
    must be below the enclosing estimator's `n_features_in_`.
    """
    stack: list[tuple[object, int | None]] = [(model, None)]
    seen: dict[int, object] = {}  # holds each object so its id cannot be reused mid-walk
    while stack:
        obj, n_features = stack.pop()
        if id(obj) in seen:
            continue
        seen[id(obj)] = obj
        name = f"{type(obj).__module__}.{type(obj).__qualname__}"
        if name == _TREE:
            _check_sklearn_tree(obj, n_features, key=key)
            continue
        if name == _PREDICTOR:
            _check_predictor(obj, n_features, key=key)
            continue
        own = getattr(obj, "n_features_in_", None) if hasattr(obj, "__dict__") else None
        if isinstance(own, int | np.integer):
            n_features = int(own)
        stack.extend((child, n_features) for child in _children(obj))


def _children(obj: object) -> list[object]:
    if isinstance(obj, np.ndarray):
        return list(obj.ravel()) if obj.dtype == object else []
    if isinstance(obj, list | tuple | set | frozenset):
        return list(obj)
    if isinstance(obj, dict):
        return list(obj.values())
    if isinstance(obj, str | bytes | int | float | type) or obj is None:
        return []
    return list(vars(obj).values()) if hasattr(obj, "__dict__") else []


def _check_sklearn_tree(tree: Any, n_features: int | None, *, key: str) -> None:
    count, capacity = int(tree.node_count), int(tree.capacity)
    # node_count is read from the file; past capacity, even reading the arrays overflows.
    if not 0 < count <= capacity:
        raise ModelFormatInvalid(key, f"tree has node_count {count} for capacity {capacity}")
    bound = int(tree.n_features) if n_features is None else min(int(tree.n_features), n_features)
    left, right = np.asarray(tree.children_left), np.asarray(tree.children_right)
    _check_nodes(left, right, np.asarray(tree.feature), left == -1, bound, key=key)
    if not np.all(right[left == -1] == -1):
        raise ModelFormatInvalid(key, "tree leaf with a right child")


def _check_predictor(predictor: Any, n_features: int | None, *, key: str) -> None:
    nodes = predictor.nodes
    names = getattr(getattr(nodes, "dtype", None), "names", None) or ()
    if not isinstance(nodes, np.ndarray) or not set(_PREDICTOR_FIELDS) <= set(names):
        raise ModelFormatInvalid(key, "HistGradientBoosting tree nodes have an unknown layout")
    if nodes.size == 0:
        raise ModelFormatInvalid(key, "HistGradientBoosting tree has no nodes")
    leaf = nodes["is_leaf"] != 0
    bound = n_features if n_features is not None else np.iinfo(np.intp).max
    _check_nodes(nodes["left"], nodes["right"], nodes["feature_idx"], leaf, bound, key=key)
    categorical = (~leaf) & (nodes["is_categorical"] != 0)
    bitsets = min(len(predictor.raw_left_cat_bitsets), len(predictor.binned_left_cat_bitsets))
    if np.any(nodes["bitset_idx"][categorical] >= bitsets):
        raise ModelFormatInvalid(key, "HistGradientBoosting split points past its bitsets")


def _check_nodes(
    left: np.ndarray, right: np.ndarray, feature: np.ndarray, leaf: np.ndarray, n_features: int,
    *, key: str,
) -> None:
    index = np.arange(len(left))
    inner = ~leaf
    lo, hi, parent = left[inner].astype(np.int64), right[inner].astype(np.int64), index[inner]
    if np.any((lo <= parent) | (lo >= len(left)) | (hi <= parent) | (hi >= len(left))):
        raise ModelFormatInvalid(key, "tree child index out of range or not after its parent")
    used = feature[inner].astype(np.int64)
    if np.any((used < 0) | (used >= n_features)):
        raise ModelFormatInvalid(key, f"tree splits on a feature outside 0..{n_features - 1}")


__all__ = [
    "DEFAULT_TRUSTED_TYPES",
    "parse_background",
    "parse_lightgbm",
    "parse_skops",
    "serialize_background",
]
