"""The server interceptor and the outgoing call helper, on real loopback servers."""

from __future__ import annotations

import contextvars
import string
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from shared.calls import unary_call
from shared.interceptor import (
    REQUEST_ID_MAX_CHARS,
    ServerCallInterceptor,
    _read_metadata,
)
from shared.logs import request_id_var
from shared.settings import ServiceSettings
from tests.security.servers import ECHO_SERVICE, echo_handler, start_server

Context = grpc.aio.ServicerContext[Any, Any]
FRONT = f"/{ECHO_SERVICE}/Front"
BACK = f"/{ECHO_SERVICE}/Back"


@dataclass
class _Seen:
    """The request ids each server's method ran with."""

    front: list[str] = field(default_factory=list)
    back: list[str] = field(default_factory=list)


@dataclass
class _Servers:
    seen: _Seen
    interceptor: ServerCallInterceptor
    front_port: int


@pytest.fixture
async def servers() -> AsyncIterator[_Servers]:
    """A front server that calls a back server with unary_call, both intercepted."""
    seen = _Seen()
    back_channel: grpc.aio.Channel | None = None

    async def back(request: bytes, context: Context) -> bytes:
        seen.back.append(request_id_var.get())
        return request

    async def front(request: bytes, context: Context) -> bytes:
        seen.front.append(request_id_var.get())
        assert back_channel is not None
        response: bytes = await unary_call(
            back_channel.unary_unary(BACK), BACK, request, 5.0
        )
        return response

    settings = ServiceSettings()
    back_server, back_port = await start_server(
        settings,
        interceptors=[ServerCallInterceptor("back.test")],
        handlers=[echo_handler({"Back": back})],
    )
    interceptor = ServerCallInterceptor("front.test")
    front_server, front_port = await start_server(
        settings, interceptors=[interceptor], handlers=[echo_handler({"Front": front})]
    )
    back_channel = grpc.aio.insecure_channel(f"127.0.0.1:{back_port}")
    try:
        yield _Servers(seen, interceptor, front_port)
    finally:
        await back_channel.close()
        await front_server.stop(0)
        await back_server.stop(0)


async def _call_front(
    port: int, metadata: tuple[tuple[str, str], ...] = (), method: str = FRONT
) -> bytes:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        response: bytes = await channel.unary_unary(method)(
            b"ping", timeout=5, metadata=metadata
        )
    return response


async def test_request_id_reaches_next_hop(servers: _Servers) -> None:
    await _call_front(servers.front_port, (("x-request-id", "req-42"),))

    assert servers.seen.front == ["req-42"]
    assert servers.seen.back == ["req-42"]


async def test_request_id_created_when_absent(servers: _Servers) -> None:
    await _call_front(servers.front_port)
    await _call_front(servers.front_port)

    first, second = servers.seen.front
    assert len(first) == 16
    assert first != second
    assert servers.seen.back == servers.seen.front


async def test_request_id_truncated(servers: _Servers) -> None:
    await _call_front(servers.front_port, (("x-request-id", "r" * 500),))

    assert servers.seen.front == ["r" * REQUEST_ID_MAX_CHARS]


async def test_unknown_methods_not_cached(servers: _Servers) -> None:
    for index in range(20):
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await _call_front(servers.front_port, method=f"/{ECHO_SERVICE}/No{index}")
        assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED
    await _call_front(servers.front_port)

    assert list(servers.interceptor._handlers) == [FRONT]


async def test_malformed_request_invalid_argument() -> None:
    """Bytes that do not parse as the request message end as INVALID_ARGUMENT."""
    from grpc_health.v1 import health_pb2

    server, port = await start_server(
        ServiceSettings(), interceptors=[ServerCallInterceptor("health.test")]
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            check = channel.unary_unary(
                "/grpc.health.v1.Health/Check",
                response_deserializer=health_pb2.HealthCheckResponse.FromString,
            )
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await check(b"\xff\xff\xff", timeout=5)
            reply = await check(b"", timeout=5)
    finally:
        await server.stop(0)

    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status = rpc_status.from_call(caught.value)
    assert status is not None
    assert reply.status == health_pb2.HealthCheckResponse.SERVING


class _MetadataOnly:
    """A servicer context that has only invocation metadata."""

    def __init__(self, metadata: tuple[tuple[str, str], ...]) -> None:
        self._metadata = metadata

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


def _request_id_after(value: str) -> str:
    def read() -> str:
        _read_metadata(_MetadataOnly((("x-request-id", value),)))  # type: ignore[arg-type]
        return request_id_var.get()

    return contextvars.copy_context().run(read)


@pytest.mark.parametrize("value", ["caf\xe9", "a\x01b", "l1\nl2"])
def test_unprintable_request_id_replaced(value: str) -> None:
    replaced = _request_id_after(value)

    assert len(replaced) == 16
    assert set(replaced) <= set(string.hexdigits)


def test_printable_request_id_kept() -> None:
    assert _request_id_after("checkout-7f3a:01") == "checkout-7f3a:01"


WATCH = "/grpc.health.v1.Health/Watch"
REFLECTION = "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"


async def _streaming_error(method: str, streamed: bool) -> grpc.aio.AioRpcError:
    """Send bytes that do not parse to a streaming method; return the call's error."""
    from grpc_reflection.v1alpha import reflection

    server, port = await start_server(
        ServiceSettings(),
        interceptors=[ServerCallInterceptor("stream.test")],
        servicers=[
            lambda s: reflection.enable_server_reflection(
                ["grpc.health.v1.Health", reflection.SERVICE_NAME], s
            )
        ],
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                if streamed:
                    call = channel.stream_stream(method)(iter([b"\xff\xff\xff"]))
                else:
                    call = channel.unary_stream(method)(b"\xff\xff\xff")
                async for _ in call:
                    pass
    finally:
        await server.stop(0)
    return caught.value


async def test_malformed_watch_invalid_argument() -> None:
    error = await _streaming_error(WATCH, streamed=False)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_malformed_reflection_invalid_argument() -> None:
    error = await _streaming_error(REFLECTION, streamed=True)

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
