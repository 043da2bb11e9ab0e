"""Fixtures of the fault tests: a model trained once for the session."""

from pathlib import Path

import pytest

from tests.faults.harness import train_test_model


@pytest.fixture(scope="session")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_test_model(tmp_path_factory.mktemp("fault-model"))
