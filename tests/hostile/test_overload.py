"""More calls at once than a service's max_concurrent_rpcs: the extra calls end with
RESOURCE_EXHAUSTED, the others are served, and the service keeps serving."""

import asyncio
from typing import Any

import grpc

from shared.server import GrpcService
from shared.settings import ServiceSettings
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc

LIMIT = 2
CALLS = 8
TIMEOUT = 10.0


class _SlowLists(consent_pb2_grpc.ConsentServiceServicer):
    """Returns ListConsents after a pause, so that calls pile up."""

    async def ListConsents(
        self, request: consent_pb2.ListConsentsRequest, context: Any
    ) -> consent_pb2.ListConsentsResponse:
        await asyncio.sleep(0.5)
        return consent_pb2.ListConsentsResponse(consistency_token="t")


async def _list(stub: consent_pb2_grpc.ConsentServiceStub) -> grpc.StatusCode:
    try:
        await stub.ListConsents(
            consent_pb2.ListConsentsRequest(subject_id="s"), timeout=TIMEOUT
        )
    except grpc.aio.AioRpcError as error:
        return error.code()
    return grpc.StatusCode.OK


async def test_overload_resource_exhausted() -> None:
    def register(server: grpc.aio.Server) -> list[str]:
        consent_pb2_grpc.add_ConsentServiceServicer_to_server(_SlowLists(), server)
        return ["trustfirst.consent.v1.ConsentService"]

    settings = ServiceSettings(port=0, grace_seconds=0, max_concurrent_rpcs=LIMIT)
    service = GrpcService("consent", settings, register)
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            codes = await asyncio.gather(*(_list(stub) for _ in range(CALLS)))
            after = await _list(stub)
    finally:
        await service.stop()

    assert set(codes) == {grpc.StatusCode.OK, grpc.StatusCode.RESOURCE_EXHAUSTED}
    assert codes.count(grpc.StatusCode.OK) >= 1
    assert after == grpc.StatusCode.OK
