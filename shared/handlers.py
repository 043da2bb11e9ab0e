"""Wrapping of gRPC method handlers, so that server interceptors can run a check inside
the call (where the servicer context exists) before the servicer method."""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import grpc

Context = grpc.aio.ServicerContext[Any, Any]
Guard = Callable[[Any, Context], Awaitable[None]]
"""A coroutine run with the request (an iterator for streaming requests) and the context
before the servicer method; it aborts the call to stop it."""


def guard_handler(
    handler: grpc.RpcMethodHandler[Any, Any], guard: Guard
) -> grpc.RpcMethodHandler[Any, Any]:
    """Return handler with guard awaited before its behaviour, for every call kind.

    The guard runs in the call's own task, so a context variable that it sets is seen by
    the servicer method.
    """
    fields: dict[str, Any] = {}
    if handler.unary_unary is not None:
        fields["unary_unary"] = _guard_unary(handler.unary_unary, guard)
    if handler.stream_unary is not None:
        fields["stream_unary"] = _guard_unary(handler.stream_unary, guard)
    if handler.unary_stream is not None:
        fields["unary_stream"] = _guard_stream(handler.unary_stream, guard)
    if handler.stream_stream is not None:
        fields["stream_stream"] = _guard_stream(handler.stream_stream, guard)
    replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**fields)  # type: ignore[attr-defined]
    return replaced


def _guard_unary(
    behaviour: Callable[..., Any], guard: Guard
) -> Callable[[Any, Context], Awaitable[Any]]:
    async def guarded(request: Any, context: Context) -> Any:
        await guard(request, context)
        result = behaviour(request, context)
        # The generated base servicer's methods (UNIMPLEMENTED) are not coroutines.
        if inspect.isawaitable(result):
            result = await result
        return result

    return guarded


def _guard_stream(behaviour: Callable[..., Any], guard: Guard) -> Callable[..., Any]:
    """Guard a streaming behaviour: an async generator, or a coroutine that writes
    its responses with ``context.write`` (as the health servicer's Watch does)."""
    if not inspect.isasyncgenfunction(behaviour):
        return _guard_unary(behaviour, guard)

    async def guarded(request: Any, context: Context) -> AsyncIterator[Any]:
        await guard(request, context)
        async for response in behaviour(request, context):
            yield response

    return guarded
