"""Rejection of request bytes that do not parse as the method's request message.

Without it, grpcio (1.85) ends such a call with UNKNOWN and a Python exception name.
``shared.interceptor.ServerCallInterceptor`` installs the tolerant deserializer and
rejects what it could not parse as INVALID_ARGUMENT with an ErrorInfo, like any other
invalid input. A streamed request is checked item by item, as the servicer reads it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from shared.errors import FieldViolation, InvalidArgument, to_rpc_status
from shared.handlers import Context

MALFORMED_DESCRIPTION = "is not a valid protobuf message of the method's request type"


class _Malformed:
    """Stands in for a request that failed to parse, until the call rejects it."""

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def tolerant_deserializer(
    deserialize: Callable[[bytes], Any],
) -> Callable[[bytes], Any]:
    """Return deserialize, changed to return a placeholder instead of raising."""

    def tolerant(data: bytes) -> Any:
        try:
            return deserialize(data)
        except Exception as error:
            return _Malformed(type(error).__name__)

    return tolerant


def is_malformed(request: Any) -> bool:
    """Return whether request is the placeholder of bytes that did not parse."""
    return isinstance(request, _Malformed)


async def reject_malformed(context: Context, domain: str) -> None:
    """Abort the call with INVALID_ARGUMENT, naming the request as unparsable."""
    error = InvalidArgument([FieldViolation("", MALFORMED_DESCRIPTION)])
    await context.abort_with_status(to_rpc_status(error, domain))
