"""Bootstrap of an asyncio gRPC server with health, reflection and graceful shutdown."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from opentelemetry import trace

from shared.authz import authorizer
from shared.interceptor import ServerCallInterceptor
from shared.settings import ServiceSettings
from shared.telemetry import METER_NAME, RpcMetrics, configure_telemetry, sdk_disabled
from shared.tls import server_credentials

logger = logging.getLogger(__name__)


def call_interceptor(name: str, settings: ServiceSettings) -> ServerCallInterceptor:
    """Return the interceptor that runs around every call of service name.

    It checks the caller's role when settings turn authorisation on, and creates spans
    unless the OpenTelemetry SDK is disabled. Raises AuthzConfigError when the policy is
    invalid.
    """
    domain = f"{name}.trustfirst.dev"
    tracer = None if sdk_disabled() else trace.get_tracer(METER_NAME)
    return ServerCallInterceptor(
        domain,
        authorizer=authorizer(settings, domain),
        metrics=RpcMetrics(),
        tracer=tracer,
    )


def _bind(
    server: grpc.aio.Server,
    host: str,
    port: int,
    settings: ServiceSettings | None = None,
) -> int:
    """Add a port to server, with mutual TLS when settings turn it on; return its number.

    Raises TlsConfigError when the TLS settings are unusable, and RuntimeError when the
    address cannot be bound.
    """
    address = f"{host}:{port}"
    credentials = None if settings is None else server_credentials(settings)
    if credentials is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, credentials)
    if bound == 0:
        raise RuntimeError(f"could not bind {address}")
    return bound


def server_options(settings: ServiceSettings) -> list[tuple[str, Any]]:
    """Return the channel arguments of a service's server."""
    return [
        ("grpc.max_receive_message_length", settings.max_message_bytes),
        ("grpc.max_send_message_length", settings.max_message_bytes),
        # Clients that ping every 10 s or slower are accepted instead of being sent
        # GOAWAY "too_many_pings" (the C-core default minimum is 5 minutes).
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        # Connections are closed after about 5 minutes so that clients re-resolve and
        # spread their calls over new replicas. Calls in flight get 30 s to finish.
        ("grpc.max_connection_age_ms", 300_000),
        ("grpc.max_connection_age_grace_ms", 30_000),
        ("grpc.so_reuseport", 0),
    ]


class GrpcService:
    """One running service: its gRPC server, health servicer and bound port."""

    def __init__(
        self,
        name: str,
        settings: ServiceSettings,
        register: Callable[[grpc.aio.Server], list[str]],
        on_stop: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self.server = grpc.aio.server(
            interceptors=[call_interceptor(name, settings)],
            options=server_options(settings),
            maximum_concurrent_rpcs=settings.max_concurrent_rpcs,
        )
        self.health = health.aio.HealthServicer()
        self._on_stop = on_stop
        self._stopping = False

        service_names = register(self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            [*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME], self.server
        )
        self._service_names = service_names
        self.port = _bind(self.server, settings.host, settings.port, settings)
        self.health_server: grpc.aio.Server | None = None
        self.health_port: int | None = None
        if settings.health_port is not None:
            # Plaintext and health only, for probes that cannot present a certificate.
            self.health_server = grpc.aio.server(options=server_options(settings))
            health_pb2_grpc.add_HealthServicer_to_server(
                self.health, self.health_server
            )
            self.health_port = _bind(
                self.health_server, settings.host, settings.health_port
            )

    async def start(self) -> None:
        """Start serving and mark every service SERVING."""
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        for service_name in ["", *self._service_names]:
            await self.health.set(service_name, health_pb2.HealthCheckResponse.SERVING)
        logger.info(
            "%s started",
            self.name,
            extra={
                "address": f"{self.settings.host}:{self.port}",
                "tls": self.settings.tls_cert_file is not None,
                "health_port": self.health_port,
            },
        )

    async def stop(self, grace: float | None = None) -> None:
        """Turn health NOT_SERVING, let in-flight calls finish within grace, then stop."""
        if self._stopping:
            return
        self._stopping = True
        grace = self.settings.grace_seconds if grace is None else grace
        logger.info("%s stopping", self.name, extra={"grace_seconds": grace})
        await self.health.enter_graceful_shutdown()
        await self.server.stop(grace)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self._on_stop is not None:
            await self._on_stop()
        logger.info("%s stopped", self.name)

    async def run_until_signal(self) -> None:
        """Configure telemetry, serve until SIGTERM or SIGINT, then stop gracefully.

        This is the entry point of a service process, so it installs the process-wide
        OpenTelemetry providers. A service started with ``start()`` uses the providers
        that its caller installed, if any.
        """
        telemetry = configure_telemetry(self.name)
        await self.start()
        loop = asyncio.get_running_loop()
        stop_requested = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop_requested.set)

        await stop_requested.wait()
        logger.info("%s received a stop signal", self.name)
        try:
            await self.stop()
        finally:
            await asyncio.to_thread(telemetry.shutdown)
