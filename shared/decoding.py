"""Rejection of request bytes that do not parse as the method's request message.

Without it, grpcio (1.85) ends such a call with UNKNOWN and a Python exception name. The
interceptor makes it INVALID_ARGUMENT with an ErrorInfo, like any other invalid input.
Only unary requests are covered, because the servicer reads a streaming request's items.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from shared.errors import FieldViolation, InvalidArgument, to_rpc_status
from shared.handlers import Context, guard_handler

MALFORMED_DESCRIPTION = "is not a valid protobuf message of the method's request type"


class _Malformed:
    """Stands in for a request that failed to parse, until the behaviour rejects it."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


class RequestDecodingInterceptor(grpc.aio.ServerInterceptor):
    """Turns an unparsable unary request into INVALID_ARGUMENT."""

    def __init__(self, domain: str) -> None:
        self._domain = domain

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None or handler.request_streaming:
            return handler
        deserialize = handler.request_deserializer
        if deserialize is None:
            return handler

        def tolerant_deserialize(data: bytes) -> Any:
            try:
                return deserialize(data)
            except Exception as error:
                return _Malformed(type(error).__name__)

        checked = guard_handler(handler, self._reject_malformed)
        replaced: grpc.RpcMethodHandler[Any, Any] = checked._replace(  # type: ignore[attr-defined]
            request_deserializer=tolerant_deserialize
        )
        return replaced

    async def _reject_malformed(self, request: Any, context: Context) -> None:
        if isinstance(request, _Malformed):
            error = InvalidArgument([FieldViolation("", MALFORMED_DESCRIPTION)])
            await context.abort_with_status(to_rpc_status(error, self._domain))
