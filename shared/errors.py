"""Domain errors and their mapping to gRPC status codes with AIP-193 details.

Servicers raise ServiceError subclasses, or let the domain raise them. The
``handle_errors`` decorator logs each one with the request id and aborts the call with a
canonical code, an ``ErrorInfo`` and, for invalid input, a ``BadRequest``.
"""

import functools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

logger = logging.getLogger(__name__)

R = TypeVar("R")


@dataclass(frozen=True)
class FieldViolation:
    """One invalid field: a dotted path with indices, like ``identifiers[1].value``."""

    field: str
    description: str


class ServiceError(Exception):
    """An error a caller can act on; ``code`` and ``reason`` go into the gRPC status."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, metadata: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = metadata or {}


class InvalidArgument(ServiceError):
    """The request is malformed; each violation names the field."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(self, violations: list[FieldViolation]) -> None:
        message = "; ".join(f"{v.field}: {v.description}" for v in violations)
        super().__init__(f"invalid request: {message}")
        self.violations = violations


class NotFound(ServiceError):
    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class FailedPrecondition(ServiceError):
    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"


class Unavailable(ServiceError):
    """A dependency (Redis, another service) failed; the caller may retry."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "DEPENDENCY_UNAVAILABLE"


@dataclass
class Violations:
    """Collects field violations and raises them together."""

    items: list[FieldViolation] = field(default_factory=list)

    def add(self, field_path: str, description: str) -> None:
        self.items.append(FieldViolation(field_path, description))

    def raise_if_any(self) -> None:
        if self.items:
            raise InvalidArgument(self.items)


def to_rpc_status(error: ServiceError, domain: str) -> grpc.Status:
    """Build the grpc.Status for error with ErrorInfo and, if any, BadRequest details."""
    info = error_details_pb2.ErrorInfo(
        reason=error.reason, domain=domain, metadata=error.metadata
    )
    details = [_pack(info)]
    if isinstance(error, InvalidArgument):
        bad_request = error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field=v.field, description=v.description
                )
                for v in error.violations
            ]
        )
        details.append(_pack(bad_request))
    status = status_pb2.Status(
        code=getattr(code_pb2, error.code.name),
        message=error.message,
        details=details,
    )
    result: grpc.Status = rpc_status.to_status(status)
    return result


def _pack(message: Any) -> any_pb2.Any:
    packed = any_pb2.Any()
    packed.Pack(message)
    return packed


def handle_errors(
    domain: str,
) -> Callable[[Callable[..., Awaitable[R]]], Callable[..., Awaitable[R]]]:
    """Wrap an async servicer method so that errors become rich gRPC statuses.

    A ServiceError aborts with its own code. Redis connection and timeout errors abort
    with UNAVAILABLE. Anything else is logged with its traceback and aborts with INTERNAL,
    without internal details in the message.
    """
    import redis.exceptions

    def decorate(method: Callable[..., Awaitable[R]]) -> Callable[..., Awaitable[R]]:
        @functools.wraps(method)
        async def wrapper(
            self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> R:
            try:
                return await method(self, request, context)
            except ServiceError as error:
                log = (
                    logger.info
                    if isinstance(error, InvalidArgument)
                    else logger.warning
                )
                log(
                    "%s failed: %s",
                    method.__name__,
                    error.message,
                    extra={"code": error.code.name, "reason": error.reason},
                )
                await context.abort_with_status(to_rpc_status(error, domain))
            except (
                redis.exceptions.ConnectionError,
                redis.exceptions.TimeoutError,
            ) as exc:
                logger.warning(
                    "%s failed: Redis unavailable: %s",
                    method.__name__,
                    type(exc).__name__,
                )
                await context.abort_with_status(
                    to_rpc_status(Unavailable("the state store is unavailable"), domain)
                )
            except grpc.aio.AbortError:
                raise
            except Exception:
                logger.exception("%s failed with an unexpected error", method.__name__)
                await context.abort_with_status(
                    to_rpc_status(ServiceError("internal error"), domain)
                )
            raise AssertionError("abort_with_status returned")  # pragma: no cover

        return wrapper

    return decorate
