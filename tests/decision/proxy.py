"""A forwarding gRPC proxy for tests: counts unary calls per method and can delay them.

It forwards request and response bytes unchanged, so it needs no generated code and
passes status codes through.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

import grpc


class ForwardingProxy:
    """Serves on a free loopback port and forwards every unary call to target."""

    def __init__(self, target: str) -> None:
        self.calls: Counter[str] = Counter()
        self.delay_seconds = 0.0
        self._channel = grpc.aio.insecure_channel(target)
        self._server = grpc.aio.server()
        self._server.add_generic_rpc_handlers((_ForwardingHandler(self),))
        self.port = self._server.add_insecure_port("127.0.0.1:0")

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self._server.start()

    async def stop(self) -> None:
        await self._server.stop(grace=0)
        await self._channel.close()

    async def forward(
        self, method: str, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        self.calls[method] += 1
        if self.delay_seconds:
            await asyncio.sleep(self.delay_seconds)

        remaining = context.time_remaining()
        call = self._channel.unary_unary(method)
        try:
            response: bytes = await call(request, timeout=remaining)
        except grpc.aio.AioRpcError as error:
            await context.abort(error.code(), error.details() or "")
        return response


class _ForwardingHandler(grpc.GenericRpcHandler):
    def __init__(self, proxy: ForwardingProxy) -> None:
        self._proxy = proxy

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        proxy = self._proxy

        async def forward(
            request: bytes, context: grpc.aio.ServicerContext[Any, Any]
        ) -> bytes:
            return await proxy.forward(method, request, context)

        return grpc.unary_unary_rpc_method_handler(forward)
