"""The consent server's health and reflection services, and its Redis failure mode."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.consent.app import create_service
from shared.embedded_redis import free_port
from tests.consent.conftest import consent_settings
from tests.consent.helpers import MARKETING_EMAIL, SUBJECT, error_reason
from trustfirst.consent.v1 import consent_pb2 as pb
from trustfirst.consent.v1 import consent_pb2_grpc


async def test_health_serving(consent_channel: grpc.aio.Channel) -> None:
    health = health_pb2_grpc.HealthStub(consent_channel)

    overall = await health.Check(health_pb2.HealthCheckRequest(service=""))
    consent = await health.Check(
        health_pb2.HealthCheckRequest(service="trustfirst.consent.v1.ConsentService")
    )

    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert consent.status == health_pb2.HealthCheckResponse.SERVING


async def test_reflection_lists_consent(consent_channel: grpc.aio.Channel) -> None:
    reflection = reflection_pb2_grpc.ServerReflectionStub(consent_channel)
    request = reflection_pb2.ServerReflectionRequest(list_services="")

    names = []
    async for response in reflection.ServerReflectionInfo(iter([request])):
        names = [s.name for s in response.list_services_response.service]

    assert "trustfirst.consent.v1.ConsentService" in names
    assert "grpc.health.v1.Health" in names


async def test_check_redis_down_unavailable() -> None:
    # Nothing listens on this loopback port, so every Redis call fails to connect.
    service = create_service(consent_settings(f"redis://127.0.0.1:{free_port()}/0"))
    await service.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{service.port}") as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as raised:
                await stub.CheckConsent(
                    pb.CheckConsentRequest(subject_id=SUBJECT, pairs=[MARKETING_EMAIL])
                )
    finally:
        await service.stop(grace=0)

    assert raised.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_reason(raised.value) == "DEPENDENCY_UNAVAILABLE"
