"""Unary calls from one service to another, with the caller's deadline and trace.

``unary_call`` is used instead of client interceptors, which cost an extra task and
coroutine layer on every call in grpcio's asyncio stack. Each call:

- gets the service's own timeout for the dependency, capped at what remains of the
  deadline of the call being served (``shared.deadlines``). A call made after that
  deadline passed is not sent and fails at once with DEADLINE_EXCEEDED;
- carries the request id as ``x-request-id`` metadata, so the called service logs it;
- runs in a CLIENT span whose context travels as ``traceparent`` metadata, so the called
  service's span joins the caller's trace.
"""

from __future__ import annotations

import asyncio
from typing import Any, TypeVar

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from shared.deadlines import DeadlinePassed, hop_timeout
from shared.logs import request_id_var
from shared.telemetry import METER_NAME, end_rpc_span, rpc_attributes

Response = TypeVar("Response")

_tracer = trace.get_tracer(METER_NAME)


async def unary_call(
    multicallable: grpc.aio.UnaryUnaryMultiCallable[Any, Response],
    method: str,
    request: Any,
    own_timeout: float | None,
) -> Response:
    """Call method (``/package.Service/Method``, for the span) with request.

    own_timeout is the caller's own limit in seconds for this dependency, or None.

    Raises grpc.aio.AioRpcError as the call itself does, with DEADLINE_EXCEEDED when
    the incoming call's deadline passed before this call could be sent.
    """
    try:
        timeout = hop_timeout(own_timeout)
    except DeadlinePassed as passed:
        raise grpc.aio.AioRpcError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.aio.Metadata(),
            grpc.aio.Metadata(),
            details=str(passed),
        ) from None
    metadata: list[tuple[str, str]] = []
    request_id = request_id_var.get()
    if request_id:
        metadata.append(("x-request-id", request_id))
    span = _tracer.start_span(
        method, kind=SpanKind.CLIENT, attributes=rpc_attributes(method)
    )
    token = otel_context.attach(trace.set_span_in_context(span))
    code = grpc.StatusCode.OK
    try:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        metadata.extend(carrier.items())
        response: Response = await multicallable(
            request, timeout=timeout, metadata=metadata
        )
        return response
    except grpc.aio.AioRpcError as error:
        code = error.code()
        raise
    except asyncio.CancelledError:
        code = grpc.StatusCode.CANCELLED
        raise
    except BaseException:
        code = grpc.StatusCode.UNKNOWN
        raise
    finally:
        end_rpc_span(span, code)
        otel_context.detach(token)
