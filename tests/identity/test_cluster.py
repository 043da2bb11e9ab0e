"""The identity suite against a real local Redis Cluster of three masters.

Every gRPC-level identity test that needs only a stub, the test Redis client and the
hasher runs again here, on a service that talks the cluster protocol. The Redis client
the tests inspect is a plain client of the master that serves the graph's slot, because
all identity keys share one hash tag and so live on that master.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from types import ModuleType
from typing import Any

import grpc
import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from services.identity.app import create_service
from services.identity.hashing import IdentifierHasher
from services.identity.keys import EVENTS_STREAM
from tests.cluster import LocalRedisCluster, redis_cluster  # noqa: F401
from tests.identity import (
    test_concurrency,
    test_linking_rules,
    test_service,
    test_split,
    test_subject_rights,
)
from tests.identity.conftest import (
    ACCOUNT_ID,
    DEVICE_ID,
    EMAIL,
    ident,
    make_settings,
    resolve,
)
from trustfirst.identity.v1 import identity_pb2_grpc

SUITE_MODULES = [
    test_service,
    test_linking_rules,
    test_split,
    test_subject_rights,
    test_concurrency,
]
ARGUMENTS = {"stub", "redis_client", "hasher"}
GRAPH_SLOT = key_slot(EVENTS_STREAM.encode())

TestCase = Callable[..., Awaitable[None]]


def suite_cases(modules: list[ModuleType]) -> list[Any]:
    """Return the unparametrised gRPC tests whose arguments the cluster fixtures provide."""
    cases = []
    for module in modules:
        for name, function in inspect.getmembers(module, inspect.iscoroutinefunction):
            arguments = set(inspect.signature(function).parameters)
            if (
                name.startswith("test_")
                and arguments <= ARGUMENTS
                and "stub" in arguments
            ):
                cases.append(
                    pytest.param(
                        function, id=f"{module.__name__.rsplit('.', 1)[-1]}.{name}"
                    )
                )
    return cases


CASES = suite_cases(SUITE_MODULES)


@pytest.fixture(scope="module")
async def cluster_stub(
    redis_cluster: LocalRedisCluster,  # noqa: F811
) -> AsyncIterator[identity_pb2_grpc.IdentityServiceAsyncStub]:
    settings = make_settings(redis_cluster.url, redis_cluster=True)
    service = create_service(settings)
    await service.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
        yield identity_pb2_grpc.IdentityServiceStub(channel)
    await service.stop(grace=0)


@pytest.fixture
async def graph_master(
    redis_cluster: LocalRedisCluster,  # noqa: F811
) -> AsyncIterator[aioredis.Redis]:
    """A plain client of the master that serves the graph's slot. Every master is
    flushed before the test."""
    for port in redis_cluster.ports:
        async with aioredis.Redis(host="127.0.0.1", port=port) as node:
            await node.flushall()
    port = redis_cluster.port_of_slot(GRAPH_SLOT)
    async with aioredis.Redis(
        host="127.0.0.1", port=port, decode_responses=True
    ) as client:
        yield client


def test_suite_collected() -> None:
    assert len(CASES) >= 50


@pytest.mark.parametrize("case", CASES)
async def test_on_cluster(
    case: TestCase,
    cluster_stub: identity_pb2_grpc.IdentityServiceAsyncStub,
    graph_master: aioredis.Redis,
    hasher: IdentifierHasher,
) -> None:
    available = {"stub": cluster_stub, "redis_client": graph_master, "hasher": hasher}
    wanted = inspect.signature(case).parameters

    await case(**{name: available[name] for name in wanted})


async def test_graph_on_one_master(
    cluster_stub: identity_pb2_grpc.IdentityServiceAsyncStub,
    graph_master: aioredis.Redis,
    redis_cluster: LocalRedisCluster,  # noqa: F811
) -> None:
    await resolve(cluster_stub, ident(EMAIL, "a@example.com"), ident(DEVICE_ID, "d"))
    await resolve(cluster_stub, ident(EMAIL, "b@example.com"), ident(ACCOUNT_ID, "b"))
    await resolve(
        cluster_stub, ident(EMAIL, "a@example.com"), ident(EMAIL, "b@example.com")
    )

    sizes = {}
    for port in redis_cluster.ports:
        async with aioredis.Redis(host="127.0.0.1", port=port) as node:
            sizes[port] = await node.dbsize()
    in_slot = await graph_master.execute_command("CLUSTER COUNTKEYSINSLOT", GRAPH_SLOT)
    owner = redis_cluster.port_of_slot(GRAPH_SLOT)

    # Four index keys, two profile records, the survivor's links and merged set, the stream.
    assert sizes[owner] == 9
    assert in_slot == 9
    assert sorted(sizes.values()) == [0, 0, 9]
