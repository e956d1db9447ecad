"""What a LightGBM booster declares about itself, read from its model text header."""

from __future__ import annotations

from dataclasses import dataclass

import lightgbm

from explainers.errors import UnsupportedModel
from explainers.types import OutputSpace, Task

# Objective → (task, output space of the raw score). Objectives not listed (ranking,
# custom, cross_entropy_lambda) have no task of ours or no known link.
OBJECTIVES: dict[str, tuple[Task, OutputSpace]] = {
    "binary": (Task.BINARY, OutputSpace.LOG_ODDS),
    "cross_entropy": (Task.BINARY, OutputSpace.LOG_ODDS),
    "multiclass": (Task.MULTICLASS, OutputSpace.MARGIN),
    "multiclassova": (Task.MULTICLASS, OutputSpace.MARGIN),
    "regression": (Task.REGRESSION, OutputSpace.VALUE),
    "regression_l1": (Task.REGRESSION, OutputSpace.VALUE),
    "huber": (Task.REGRESSION, OutputSpace.VALUE),
    "fair": (Task.REGRESSION, OutputSpace.VALUE),
    "quantile": (Task.REGRESSION, OutputSpace.VALUE),
    "mape": (Task.REGRESSION, OutputSpace.VALUE),
    # log link: the raw score is log(prediction)
    "poisson": (Task.REGRESSION, OutputSpace.MARGIN),
    "gamma": (Task.REGRESSION, OutputSpace.MARGIN),
    "tweedie": (Task.REGRESSION, OutputSpace.MARGIN),
}


@dataclass(frozen=True, slots=True)
class LightGBMHeader:
    """Objective, classes, categorical columns and tree kind of a booster."""

    objective: str
    num_class: int
    categorical: tuple[int, ...]
    linear_tree: bool

    @property
    def task(self) -> Task:
        """Our task for the objective (UnsupportedModel if it has none)."""
        return self._kind()[0]

    @property
    def output_space(self) -> OutputSpace:
        """The space of the booster's raw score."""
        return self._kind()[1]

    def _kind(self) -> tuple[Task, OutputSpace]:
        if self.objective not in OBJECTIVES:
            raise UnsupportedModel("lightgbm.Booster", f"objective {self.objective!r}")
        return OBJECTIVES[self.objective]


def read_header(booster: lightgbm.Booster) -> LightGBMHeader:
    """Read the header and parameters of the booster's model text.

    `booster.params` holds the caller's spelling for an in-process booster (aliases such
    as "mse", no categorical columns given to the Dataset); the model text holds
    LightGBM's resolved values, and its first iteration is enough to carry them.
    """
    header: dict[str, str] = {}
    params: dict[str, str] = {}
    in_trees = False
    for line in booster.model_to_string(num_iteration=1).splitlines():
        if line.startswith("Tree="):
            in_trees = True
        elif line.startswith("[") and line.endswith("]") and ": " in line:
            key, _, value = line[1:-1].partition(": ")
            params[key] = value
        elif not in_trees and "=" in line:
            key, _, value = line.partition("=")
            header[key] = value
    objective = header.get("objective", "").split(maxsplit=1)
    categorical = tuple(sorted({int(c) for c in params.get("categorical_feature", "").split(",")
                                if c.strip().lstrip("-").isdigit()}))
    return LightGBMHeader(
        objective=objective[0] if objective else "none",
        num_class=int(header.get("num_class", "1")),
        categorical=categorical,
        linear_tree=params.get("linear_tree", "0") not in ("0", "false", ""),
    )
