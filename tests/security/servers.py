"""Small gRPC servers and channels for the security tests, built with the shared
TLS, authorisation and deadline pieces the services use."""

from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from shared.settings import ServiceSettings
from shared.tls import channel_credentials, server_credentials
from tests.security.certs import KeyPair

Context = grpc.aio.ServicerContext[Any, Any]
RawBehaviour = Callable[[bytes, Context], Awaitable[bytes]]

ECHO_SERVICE = "trustfirst.test.Echo"


def tls_settings(keys: KeyPair, ca_path: Path, **overrides: Any) -> ServiceSettings:
    """Settings of a service that presents keys and trusts the CA at ca_path."""
    values: dict[str, Any] = {
        "tls_cert_file": keys.cert_path,
        "tls_key_file": keys.key_path,
        "tls_ca_file": ca_path,
    }
    values.update(overrides)
    return ServiceSettings(**values)


def echo_handler(behaviours: dict[str, RawBehaviour]) -> grpc.GenericRpcHandler:
    """Return a handler of raw-bytes methods under ``/trustfirst.test.Echo/<name>``."""
    return grpc.method_handlers_generic_handler(
        ECHO_SERVICE,
        {
            name: grpc.unary_unary_rpc_method_handler(behaviour)
            for name, behaviour in behaviours.items()
        },
    )


async def start_server(
    settings: ServiceSettings,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    handlers: Sequence[grpc.GenericRpcHandler] = (),
    servicers: Sequence[Callable[[grpc.aio.Server], None]] = (),
) -> tuple[grpc.aio.Server, int]:
    """Start a loopback server with health, the given handlers and servicers.

    It listens with mutual TLS when settings turn TLS on, in plaintext otherwise.
    """
    server = grpc.aio.server(interceptors=list(interceptors))
    servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    await servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    server.add_generic_rpc_handlers(tuple(handlers))
    for add in servicers:
        add(server)

    credentials = server_credentials(settings)
    if credentials is None:
        port = server.add_insecure_port("127.0.0.1:0")
    else:
        port = server.add_secure_port("127.0.0.1:0", credentials)
    await server.start()
    return server, port


def client_channel(
    port: int, settings: ServiceSettings | None = None, host: str = "127.0.0.1"
) -> grpc.aio.Channel:
    """Return a channel to port: mutual TLS with settings' certificate, else plaintext."""
    credentials = None if settings is None else channel_credentials(settings)
    if credentials is None:
        return grpc.aio.insecure_channel(f"{host}:{port}")
    return grpc.aio.secure_channel(f"{host}:{port}", credentials)


async def health_status(channel: grpc.aio.Channel) -> int:
    """Return the overall health status the server sends on channel."""
    reply = await health_pb2_grpc.HealthStub(channel).Check(
        health_pb2.HealthCheckRequest(), timeout=5
    )
    return int(reply.status)
