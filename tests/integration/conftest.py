"""Session fixtures of the integration tests."""

from __future__ import annotations

import pytest

from tests.integration.scale_out_support import CreditModel, publish_credit_model


@pytest.fixture(scope="session")
async def credit(tmp_path_factory: pytest.TempPathFactory) -> CreditModel:
    """The demo credit model published once to a local artifact folder, with a keyring."""
    return await publish_credit_model(tmp_path_factory.mktemp("credit"))
