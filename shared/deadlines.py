"""Propagation of the caller's deadline to the calls a service makes while serving it.

The server interceptor stores the deadline of the incoming call in a context variable.
The client interceptor caps the timeout of every outgoing call at what remains of it. A
client's own timeout (a service's per-dependency setting) still applies when it is
shorter, so each hop gets the smaller of the two.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from shared.handlers import Context, guard_handler

_deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "grpc_deadline", default=None
)
"""Deadline of the call being served, as a time.monotonic() value; None without one."""


def remaining_seconds() -> float | None:
    """Return the seconds left of the incoming call's deadline, or None without one."""
    deadline = _deadline_var.get()
    if deadline is None:
        return None
    return deadline - time.monotonic()


def set_deadline(timeout_seconds: float | None) -> None:
    """Set the deadline of the current context to timeout_seconds from now (None: none)."""
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    _deadline_var.set(deadline)


class DeadlineInterceptor(grpc.aio.ServerInterceptor):
    """Stores each incoming call's deadline for DeadlinePropagationInterceptor."""

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any] | None]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        handler = await continuation(handler_call_details)
        if handler is None:
            return None
        return guard_handler(handler, _store_deadline)


async def _store_deadline(request: Any, context: Context) -> None:
    set_deadline(context.time_remaining())


class DeadlinePropagationInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """Caps an outgoing unary call's timeout at the incoming call's remaining deadline.

    A call made after that deadline passed is not sent: it fails at once with
    DEADLINE_EXCEEDED. Outside a served call, the timeout is left as it is.
    """

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        remaining = remaining_seconds()
        if remaining is not None and remaining <= 0:
            raise grpc.aio.AioRpcError(
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.aio.Metadata(),
                grpc.aio.Metadata(),
                details="the deadline of the call being served has passed",
            )
        if remaining is not None:
            timeout = client_call_details.timeout
            if timeout is None or timeout > remaining:
                client_call_details = client_call_details._replace(  # type: ignore[attr-defined]
                    timeout=remaining
                )
        return await continuation(client_call_details, request)
