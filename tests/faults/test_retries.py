"""Retries come from the channel's service config and cover read-only calls only; a
write that a caller repeats itself is idempotent."""

from collections.abc import AsyncIterator

import grpc
import pytest
from pydantic import SecretStr

from services.identity.app import create_service
from services.identity.settings import IdentitySettings
from shared.channels import create_channel
from shared.server import GrpcService
from tests.faults.proxy import DelayingProxy
from trustfirst.identity.v1 import identity_pb2, identity_pb2_grpc

HASH_KEY = "retry-tests-identity-hash-key-0123456789abcdef"
EMAIL = identity_pb2.Identifier(
    kind=identity_pb2.IDENTIFIER_KIND_EMAIL, value="retry-customer@example.com"
)
TIMEOUT = 5.0


@pytest.fixture
async def identity(redis_url: str, redis_client: object) -> AsyncIterator[GrpcService]:
    settings = IdentitySettings(
        port=0, redis_url=redis_url, grace_seconds=0, hash_key=SecretStr(HASH_KEY)
    )
    service = create_service(settings)
    await service.start()
    yield service
    await service.stop()


@pytest.fixture
async def proxy(identity: GrpcService) -> AsyncIterator[DelayingProxy]:
    forwarding = DelayingProxy(f"127.0.0.1:{identity.port}")
    await forwarding.start()
    yield forwarding
    await forwarding.stop()


async def test_lookup_retried_on_unavailable(proxy: DelayingProxy) -> None:
    proxy.failures_left = 1
    async with create_channel(proxy.address) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        reply = await stub.Lookup(
            identity_pb2.LookupRequest(identifiers=[EMAIL]), timeout=TIMEOUT
        )

    assert reply.found is False
    assert len(proxy.calls) == 2


async def test_resolve_not_retried(proxy: DelayingProxy) -> None:
    proxy.failures_left = 1
    async with create_channel(proxy.address) as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.Resolve(
                identity_pb2.ResolveRequest(identifiers=[EMAIL], source="web"),
                timeout=TIMEOUT,
            )

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert len(proxy.calls) == 1


async def test_resolve_repeated_same_profile(identity: GrpcService) -> None:
    request = identity_pb2.ResolveRequest(identifiers=[EMAIL], source="web")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{identity.port}") as channel:
        stub = identity_pb2_grpc.IdentityServiceStub(channel)
        first = await stub.Resolve(request, timeout=TIMEOUT)
        second = await stub.Resolve(request, timeout=TIMEOUT)

    assert first.created is True
    assert second.created is False
    assert second.profile_id == first.profile_id
    assert list(second.merged_profile_ids) == []
