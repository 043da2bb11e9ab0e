"""Fixtures of the hostile-input tests: the suite as processes, one for the session,
with a profile that has consent and a purchase, so that valid ids reach the stores."""

import asyncio
from collections.abc import Iterator

import pytest

from tests.faults.harness import ProcessSuite, start_process_suite, train_test_model
from tests.faults.workload import Stubs, register_customers


@pytest.fixture(scope="session")
def hostile_suite(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessSuite]:
    folder = tmp_path_factory.mktemp("hostile")
    suite = start_process_suite(folder, train_test_model(folder / "model"))
    try:
        yield suite
    finally:
        suite.stop()


@pytest.fixture(scope="session")
def known_profiles(hostile_suite: ProcessSuite) -> list[str]:
    async def register() -> list[str]:
        stubs = Stubs.connect({n: hostile_suite.target(n) for n in hostile_suite.ports})
        try:
            return await register_customers(stubs, 2, "hostile-")
        finally:
            await stubs.close()

    return asyncio.run(register())
