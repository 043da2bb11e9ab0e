"""GrpcService and create_channel with the security settings: mutual TLS on the service
port, a plaintext health-only port, authorisation, and unparsable requests."""

from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2

from shared.channels import create_channel
from shared.server import GrpcService
from shared.settings import ServiceSettings
from shared.tls import channel_credentials
from tests.security.conftest import Pki
from tests.security.servers import health_status, tls_settings
from tests.security.test_authz import _NoSubjects
from trustfirst.consent.v1 import consent_pb2, consent_pb2_grpc

SERVING = health_pb2.HealthCheckResponse.SERVING
CHECK = "/trustfirst.consent.v1.ConsentService/CheckConsent"
TIMEOUT = 5.0


async def _service(settings: ServiceSettings) -> GrpcService:
    servicer = _NoSubjects()

    def register(server: grpc.aio.Server) -> list[str]:
        consent_pb2_grpc.add_ConsentServiceServicer_to_server(servicer, server)
        return ["trustfirst.consent.v1.ConsentService"]

    service = GrpcService("consent", settings, register)
    await service.start()
    return service


@pytest.fixture
async def secure_service(pki: Pki) -> AsyncIterator[GrpcService]:
    settings = tls_settings(
        pki.server, pki.authority.cert_path, port=0, health_port=0, grace_seconds=0
    )
    service = await _service(settings)
    yield service
    await service.stop()


def _client(pki: Pki, caller: str) -> ServiceSettings:
    return tls_settings(pki.clients[caller], pki.authority.cert_path)


async def test_service_health_over_mtls(pki: Pki, secure_service: GrpcService) -> None:
    credentials = channel_credentials(_client(pki, "decision"))
    async with create_channel(
        f"127.0.0.1:{secure_service.port}", credentials
    ) as channel:
        status = await health_status(channel)

    assert status == SERVING


async def test_service_rejects_plaintext(secure_service: GrpcService) -> None:
    async with create_channel(f"127.0.0.1:{secure_service.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await health_status(channel)

    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE


async def test_health_port_plaintext(secure_service: GrpcService) -> None:
    assert secure_service.health_port is not None
    async with create_channel(f"127.0.0.1:{secure_service.health_port}") as channel:
        status = await health_status(channel)

    assert status == SERVING


async def test_health_port_serves_health_only(secure_service: GrpcService) -> None:
    assert secure_service.health_port is not None
    async with create_channel(f"127.0.0.1:{secure_service.health_port}") as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.ListConsents(
                consent_pb2.ListConsentsRequest(subject_id="p_x"), timeout=TIMEOUT
            )

    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_health_port_not_serving_on_stop(pki: Pki) -> None:
    settings = tls_settings(
        pki.server, pki.authority.cert_path, port=0, health_port=0, grace_seconds=0
    )
    service = await _service(settings)
    assert service.health_port is not None
    async with create_channel(f"127.0.0.1:{service.health_port}") as channel:
        await service.health.enter_graceful_shutdown()
        status = await health_status(channel)
    await service.stop()

    assert status == health_pb2.HealthCheckResponse.NOT_SERVING


@pytest.mark.parametrize(
    ("caller", "code"),
    [
        ("decision", grpc.StatusCode.NOT_FOUND),
        ("checkout", grpc.StatusCode.PERMISSION_DENIED),
    ],
)
async def test_service_authorizes_caller(
    pki: Pki, secure_service: GrpcService, caller: str, code: grpc.StatusCode
) -> None:
    credentials = channel_credentials(_client(pki, caller))
    async with create_channel(
        f"127.0.0.1:{secure_service.port}", credentials
    ) as channel:
        stub = consent_pb2_grpc.ConsentServiceStub(channel)
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await stub.CheckConsent(
                consent_pb2.CheckConsentRequest(subject_id="p_absent"), timeout=TIMEOUT
            )

    assert caught.value.code() == code


async def test_service_plaintext_without_tls() -> None:
    service = await _service(ServiceSettings(port=0, grace_seconds=0))
    try:
        async with create_channel(f"127.0.0.1:{service.port}") as channel:
            stub = consent_pb2_grpc.ConsentServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.CheckConsent(
                    consent_pb2.CheckConsentRequest(subject_id="p_absent"),
                    timeout=TIMEOUT,
                )
    finally:
        await service.stop()

    # Authorisation is off without TLS, so the call reaches the servicer.
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert service.health_port is None


async def test_service_garbage_request() -> None:
    service = await _service(ServiceSettings(port=0, grace_seconds=0))
    try:
        async with create_channel(f"127.0.0.1:{service.port}") as channel:
            call: Any = channel.unary_unary(CHECK)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await call(b"\x0a\x02\xc3\x28", timeout=TIMEOUT)
    finally:
        await service.stop()

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
