"""A loopback gRPC proxy that can delay calls or fail them with UNAVAILABLE, and records
the deadline each call arrived with and whether the caller cancelled it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]


@dataclass
class ProxiedCall:
    """What the proxy saw of one call."""

    method: str
    time_remaining: float | None
    cancelled: bool = False
    forwarded: bool = False
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    """Set once the proxy is done with the call: forwarded, failed or cancelled."""


@dataclass
class DelayingProxy:
    """Forwards raw request and response bytes to target after delay_seconds.

    The next failures_left calls are not forwarded but end with UNAVAILABLE.
    """

    target: str
    delay_seconds: float = 0.0
    failures_left: int = 0
    calls: list[ProxiedCall] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._channel = grpc.aio.insecure_channel(self.target)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_Forward(self),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(0)
        await self._channel.close()

    async def forward(self, method: str, request: bytes, context: Context) -> bytes:
        call = ProxiedCall(method, context.time_remaining())
        self.calls.append(call)
        try:
            return await self._forward(call, request, context)
        finally:
            call.finished.set()

    async def _forward(
        self, call: ProxiedCall, request: bytes, context: Context
    ) -> bytes:
        if self.failures_left > 0:
            self.failures_left -= 1
            await context.abort(grpc.StatusCode.UNAVAILABLE, "failed by the test proxy")
        try:
            if self.delay_seconds:
                await asyncio.sleep(self.delay_seconds)
        except asyncio.CancelledError:
            call.cancelled = True
            raise

        call.forwarded = True
        try:
            response: bytes = await self._channel.unary_unary(call.method)(
                request, timeout=context.time_remaining()
            )
        except grpc.aio.AioRpcError as error:
            await context.abort(error.code(), error.details() or "")
        return response


class _Forward(grpc.GenericRpcHandler):
    def __init__(self, proxy: DelayingProxy) -> None:
        self._proxy = proxy

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        proxy = self._proxy

        async def forward(request: bytes, context: Context) -> bytes:
            return await proxy.forward(method, request, context)

        return grpc.unary_unary_rpc_method_handler(forward)
