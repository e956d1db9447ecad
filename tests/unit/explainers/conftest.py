"""Session fixtures of the explainer tests."""

from __future__ import annotations

import pytest

from tests.unit.explainers.support import DATASETS, Dataset


@pytest.fixture(scope="session")
def datasets() -> dict[str, Dataset]:
    """Every dataset, built once per session."""
    return {name: make() for name, make in DATASETS.items()}
