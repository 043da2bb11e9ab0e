"""Deadline propagation: an outgoing call gets the smaller of its own timeout and what
remains of the incoming call's deadline."""

import asyncio
from typing import Any

import grpc
import pytest

from shared.calls import unary_call
from shared.deadlines import remaining_seconds, set_deadline
from shared.interceptor import ServerCallInterceptor
from shared.settings import ServiceSettings
from tests.security.servers import ECHO_SERVICE, echo_handler, start_server

Context = grpc.aio.ServicerContext[Any, Any]

ROUNDING_SECONDS = 0.05
"""Slack for the grpc-timeout header, which carries a deadline rounded up."""


class _Hops:
    """A front server that calls a back server with a fixed timeout, as decision calls
    identity; the back server records the time it had left."""

    def __init__(self, own_timeout: float | None) -> None:
        self.own_timeout = own_timeout
        self.back_remaining: list[float | None] = []
        self.front_remaining: list[float | None] = []
        self.channel: grpc.aio.Channel | None = None

    async def back(self, request: bytes, context: Context) -> bytes:
        self.back_remaining.append(context.time_remaining())
        return request

    async def front(self, request: bytes, context: Context) -> bytes:
        self.front_remaining.append(remaining_seconds())
        assert self.channel is not None
        method = f"/{ECHO_SERVICE}/Back"
        call = self.channel.unary_unary(method)
        response: bytes = await unary_call(call, method, request, self.own_timeout)
        return response


async def _through_hops(
    own_timeout: float | None, caller_timeout: float | None
) -> _Hops:
    hops = _Hops(own_timeout)
    settings = ServiceSettings()
    back, back_port = await start_server(
        settings, handlers=[echo_handler({"Back": hops.back})]
    )
    front, front_port = await start_server(
        settings,
        interceptors=[ServerCallInterceptor("deadline.test")],
        handlers=[echo_handler({"Front": hops.front})],
    )
    hops.channel = grpc.aio.insecure_channel(f"127.0.0.1:{back_port}")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{front_port}") as channel:
            call = channel.unary_unary(f"/{ECHO_SERVICE}/Front")
            await call(b"ping", timeout=caller_timeout)
    finally:
        await hops.channel.close()
        await front.stop(0)
        await back.stop(0)
    return hops


async def test_caller_deadline_caps_hop() -> None:
    hops = await _through_hops(own_timeout=30.0, caller_timeout=2.0)
    remaining = hops.back_remaining[0]

    assert remaining is not None
    assert remaining <= 2.0 + ROUNDING_SECONDS


async def test_own_timeout_caps_hop() -> None:
    hops = await _through_hops(own_timeout=1.0, caller_timeout=30.0)
    remaining = hops.back_remaining[0]

    assert remaining is not None
    assert remaining <= 1.0 + ROUNDING_SECONDS


async def test_hop_without_any_deadline() -> None:
    hops = await _through_hops(own_timeout=None, caller_timeout=None)

    assert hops.front_remaining == [None]
    assert hops.back_remaining == [None]


async def test_caller_deadline_alone() -> None:
    hops = await _through_hops(own_timeout=None, caller_timeout=3.0)
    remaining = hops.back_remaining[0]

    assert remaining is not None
    assert remaining <= 3.0 + ROUNDING_SECONDS


async def test_expired_deadline_fails_at_once() -> None:
    calls: list[bytes] = []

    async def back(request: bytes, context: Context) -> bytes:
        calls.append(request)
        return request

    server, port = await start_server(
        ServiceSettings(), handlers=[echo_handler({"Back": back})]
    )

    async def call_after_deadline() -> None:
        set_deadline(-1.0)
        method = f"/{ECHO_SERVICE}/Back"
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            await unary_call(channel.unary_unary(method), method, b"late", 10)

    try:
        # A task of its own, so the expired deadline stays out of the test's context.
        with pytest.raises(grpc.aio.AioRpcError) as caught:
            await asyncio.create_task(call_after_deadline())
    finally:
        await server.stop(0)

    assert caught.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert calls == []


def test_remaining_outside_call() -> None:
    assert remaining_seconds() is None
