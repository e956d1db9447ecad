"""Errors raised by the explainers package."""

# House style names errors as nouns (UnsupportedModel, SchemaMismatch), not ...Error.

from __future__ import annotations


class ExplainerError(Exception):
    """Root of every explainer failure."""


class UnsupportedModel(ExplainerError):
    """No explainer or adapter handles this model object."""

    def __init__(self, model_type: str, reason: str) -> None:
        super().__init__(f"unsupported model {model_type}: {reason}")
        self.model_type = model_type
        self.reason = reason


class InputShapeMismatch(ExplainerError):
    """The encoded rows do not have one column per schema feature."""

    def __init__(self, expected: int, got: int) -> None:
        super().__init__(f"expected {expected} feature columns, got {got}")
        self.expected = expected
        self.got = got


class SchemaMismatch(ExplainerError):
    """The model object and the feature schema disagree (names, kinds, task or classes)."""

    def __init__(self, detail: str) -> None:
        super().__init__(f"model and schema disagree: {detail}")
        self.detail = detail


class InvalidFeatureValue(ExplainerError):
    """A feature value cannot be encoded (the value itself is withheld: it may be masked)."""

    def __init__(self, feature: str, reason: str) -> None:
        super().__init__(f"feature {feature!r}: {reason}")
        self.feature = feature
        self.reason = reason


class MissingValueUnsupported(ExplainerError):
    """The model cannot score a missing value for these features."""

    def __init__(self, features: tuple[str, ...]) -> None:
        super().__init__(f"the model cannot take missing values for {', '.join(features)}")
        self.features = features


class InvalidClassIndex(ExplainerError):
    """A requested class index is outside the model's classes, or the shape is wrong."""

    def __init__(self, n_classes: int, detail: str) -> None:
        super().__init__(f"invalid class indices for {n_classes} classes: {detail}")
        self.n_classes = n_classes
        self.detail = detail


class EmptyBackground(ExplainerError):
    """The explainer needs background rows and got none."""

    def __init__(self) -> None:
        super().__init__("the background sample has no rows")


class AdditivityViolation(ExplainerError):
    """Attributions do not add up to the model output: a bug, never a rounding effect."""

    def __init__(self, method: str, max_error: float) -> None:
        super().__init__(f"{method}: base value + attributions misses the output by {max_error:g}")
        self.method = method
        self.max_error = max_error


class ScoringFailure(ExplainerError):
    """The model raised while scoring rows; only the exception type is kept.

    Third-party messages can echo raw feature values (e.g. an encoder's unknown
    category), and those may be masked values that must never reach logs.
    """

    def __init__(self, model_type: str, error_type: str) -> None:
        super().__init__(f"{model_type} failed to score the rows ({error_type})")
        self.model_type = model_type
        self.error_type = error_type


class CounterfactualRequestInvalid(ExplainerError):
    """A counterfactual target or constraint does not fit the model (value withheld)."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"counterfactual {field}: {reason}")
        self.field = field
        self.reason = reason
