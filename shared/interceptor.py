"""The one server interceptor of every service: everything that runs around each call.

Each asyncio server interceptor is another coroutine and another handler lookup on every
call, so the per-call work is done by one interceptor, in one wrapper per method:

1. the request id log field, from the ``x-request-id`` metadata or a new one;
2. the call's deadline, stored for the calls the servicer makes (``shared.deadlines``);
3. a SERVER span that continues the caller's ``traceparent`` (health checks and
   reflection get none);
4. the caller's role, when an authoriser is given (``shared.authz``);
5. rejection of request bytes that do not parse (``shared.decoding``);
6. the call duration metric, and the decisions and consent denials a response carries.

The wrapped handler of each method is built on its first call and reused.
"""

from __future__ import annotations

import asyncio
import inspect
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import grpc
from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import SpanKind

from shared.authz import Authorizer
from shared.deadlines import set_deadline
from shared.decoding import is_malformed, reject_malformed, tolerant_deserializer
from shared.handlers import Context
from shared.logs import request_id_var
from shared.telemetry import (
    UNTRACED_SERVICES,
    RpcMetrics,
    end_rpc_span,
    rpc_attributes,
)

Continuation = Callable[
    [grpc.HandlerCallDetails], Awaitable["grpc.RpcMethodHandler[Any, Any] | None"]
]

REQUEST_ID_KEY = "x-request-id"
REQUEST_ID_MAX_CHARS = 64
_TRACE_KEYS = frozenset({"traceparent", "tracestate", "baggage"})
_CODES_BY_NUMBER = {status.value[0]: status for status in grpc.StatusCode}


class ServerCallInterceptor(grpc.aio.ServerInterceptor):
    """Runs the per-call steps around every method of one server.

    domain names the service in error details. A service passes metrics and tracer, and
    a test server may leave them out.
    """

    def __init__(
        self,
        domain: str,
        authorizer: Authorizer | None = None,
        metrics: RpcMetrics | None = None,
        tracer: trace.Tracer | None = None,
    ) -> None:
        self._domain = domain
        self._authorizer = authorizer
        self._metrics = metrics
        self._tracer = tracer
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self, continuation: Continuation, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[Any, Any] | None:
        method = handler_call_details.method
        wrapped = self._handlers.get(method)
        if wrapped is not None:
            return wrapped
        handler = await continuation(handler_call_details)
        if handler is None:
            # Unknown methods are not cached, so a caller cannot grow the cache.
            return None
        wrapped = self._wrap(method, handler)
        self._handlers[method] = wrapped
        return wrapped

    def _wrap(
        self, method: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        authorizer = self._authorizer
        if authorizer is not None and not authorizer.restricts(method):
            authorizer = None
        if handler.request_streaming or handler.response_streaming:
            return _wrap_streaming(handler, method, authorizer, self._domain)
        behaviour = handler.unary_unary
        if behaviour is None:
            return handler
        tracer = self._tracer
        if tracer is not None and method.lstrip("/").startswith(UNTRACED_SERVICES):
            tracer = None
        call = _UnaryCall(
            method, behaviour, self._domain, authorizer, self._metrics, tracer
        )
        replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(  # type: ignore[attr-defined]
            unary_unary=call.run
        )
        deserialize = handler.request_deserializer
        if deserialize is not None:
            replaced = replaced._replace(  # type: ignore[attr-defined]
                request_deserializer=tolerant_deserializer(deserialize)
            )
        return replaced


class _UnaryCall:
    """The wrapper of one unary method; ``run`` is the behaviour gRPC calls."""

    __slots__ = (
        "_attributes",
        "_authorizer",
        "_behaviour",
        "_domain",
        "_method",
        "_metrics",
        "_tracer",
    )

    def __init__(
        self,
        method: str,
        behaviour: Callable[..., Any],
        domain: str,
        authorizer: Authorizer | None,
        metrics: RpcMetrics | None,
        tracer: trace.Tracer | None,
    ) -> None:
        self._method = method
        self._behaviour = behaviour
        self._domain = domain
        self._authorizer = authorizer
        self._metrics = metrics
        self._tracer = tracer
        self._attributes = rpc_attributes(method)

    async def run(self, request: Any, context: Context) -> Any:
        started = time.perf_counter()
        carrier = _read_metadata(context)
        set_deadline(context.time_remaining())
        span = None
        token = None
        if self._tracer is not None:
            parent = propagate.extract(carrier) if carrier else None
            span = self._tracer.start_span(
                self._method,
                context=parent,
                kind=SpanKind.SERVER,
                attributes=self._attributes,
            )
            token = otel_context.attach(trace.set_span_in_context(span, parent))
        code = grpc.StatusCode.UNKNOWN
        try:
            if self._authorizer is not None:
                await self._authorizer.check(self._method, context)
            if is_malformed(request):
                await reject_malformed(context, self._domain)
            response = self._behaviour(request, context)
            # The generated base servicer's methods (UNIMPLEMENTED) are not coroutines.
            if inspect.isawaitable(response):
                response = await response
            code = _status_code(context, grpc.StatusCode.OK)
            if code == grpc.StatusCode.OK and self._metrics is not None:
                self._metrics.record_response(self._method, response)
            return response
        except asyncio.CancelledError:
            code = grpc.StatusCode.CANCELLED
            raise
        except grpc.aio.AbortError:
            code = _status_code(context, grpc.StatusCode.UNKNOWN)
            raise
        except BaseException as error:
            code = _status_code(context, grpc.StatusCode.UNKNOWN)
            if span is not None:
                span.record_exception(error)
            raise
        finally:
            if self._metrics is not None:
                self._metrics.record_call(
                    self._method, code, time.perf_counter() - started
                )
            if span is not None:
                end_rpc_span(span, code)
            if token is not None:
                otel_context.detach(token)


def _read_metadata(context: Context) -> Mapping[str, str] | None:
    """Set the request id from the call's metadata; return its trace headers, if any."""
    request_id = ""
    carrier: dict[str, str] | None = None
    for key, value in context.invocation_metadata() or ():
        if not isinstance(value, str):
            continue
        if key == REQUEST_ID_KEY:
            request_id = value[:REQUEST_ID_MAX_CHARS]
        elif key in _TRACE_KEYS:
            if carrier is None:
                carrier = {}
            carrier[key] = value
    # Metadata is forwarded to the next hop, whose gRPC client rejects a value that is
    # not printable ASCII, so such an id is replaced.
    if not (request_id.isascii() and request_id.isprintable()):
        request_id = ""
    request_id_var.set(request_id or uuid.uuid4().hex[:16])
    return carrier


def _status_code(context: Context, default: grpc.StatusCode) -> grpc.StatusCode:
    """Return the status code the call will end with, or default when none was set."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    # The asyncio context returns the code as the number of the C core enum.
    if isinstance(code, int):
        return _CODES_BY_NUMBER.get(code, default)
    return default


def _wrap_streaming(
    handler: grpc.RpcMethodHandler[Any, Any],
    method: str,
    authorizer: Authorizer | None,
    domain: str,
) -> grpc.RpcMethodHandler[Any, Any]:
    """Wrap a streaming method (health Watch, reflection): request id, deadline, role,
    and rejection of request messages that do not parse.

    Streaming calls get no span and no duration metric.
    """

    async def prepare(context: Context) -> None:
        _read_metadata(context)
        set_deadline(context.time_remaining())
        if authorizer is not None:
            await authorizer.check(method, context)

    async def checked(
        requests: AsyncIterator[Any], context: Context
    ) -> AsyncIterator[Any]:
        async for request in requests:
            if is_malformed(request):
                await reject_malformed(context, domain)
            yield request

    def wrap(
        behaviour: Callable[..., Any], streamed_request: bool
    ) -> Callable[..., Any]:
        async def start(request: Any, context: Context) -> Any:
            await prepare(context)
            if streamed_request:
                return checked(request, context)
            if is_malformed(request):
                await reject_malformed(context, domain)
            return request

        if inspect.isasyncgenfunction(behaviour):

            async def generate(request: Any, context: Context) -> AsyncIterator[Any]:
                request = await start(request, context)
                async for response in behaviour(request, context):
                    yield response

            return generate

        async def respond(request: Any, context: Context) -> Any:
            # A coroutine that writes its responses with context.write, as health's
            # Watch does, or a unary response to a streamed request.
            request = await start(request, context)
            result = behaviour(request, context)
            if inspect.isawaitable(result):
                result = await result
            return result

        return respond

    fields: dict[str, Any] = {}
    for name in ("unary_stream", "stream_unary", "stream_stream"):
        behaviour = getattr(handler, name)
        if behaviour is not None:
            fields[name] = wrap(behaviour, streamed_request=name != "unary_stream")
    deserialize = handler.request_deserializer
    if deserialize is not None:
        fields["request_deserializer"] = tolerant_deserializer(deserialize)
    replaced: grpc.RpcMethodHandler[Any, Any] = handler._replace(**fields)  # type: ignore[attr-defined]
    return replaced
