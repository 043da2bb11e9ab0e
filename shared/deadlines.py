"""Propagation of the caller's deadline to the calls a service makes while serving it.

``shared.interceptor.ServerCallInterceptor`` stores the deadline of the incoming call in
a context variable. ``shared.calls.unary_call`` caps the timeout of every outgoing call at
what remains of it. A client's own timeout (a service's per-dependency setting) still
applies when it is shorter, so each hop gets the smaller of the two.
"""

from __future__ import annotations

import contextvars
import time

_deadline_var: contextvars.ContextVar[float | None] = contextvars.ContextVar(
    "grpc_deadline", default=None
)
"""Deadline of the call being served, as a time.monotonic() value; None without one."""


class DeadlinePassed(Exception):
    """The deadline of the call being served has passed; an outgoing call is not sent."""


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


def hop_timeout(own_seconds: float | None) -> float | None:
    """Return the timeout of an outgoing call: own_seconds capped at what remains.

    Outside a served call, own_seconds is returned as it is. Raises DeadlinePassed when
    the incoming call's deadline has passed.
    """
    remaining = remaining_seconds()
    if remaining is None:
        return own_seconds
    if remaining <= 0:
        raise DeadlinePassed("the deadline of the call being served has passed")
    if own_seconds is None or own_seconds > remaining:
        return remaining
    return own_seconds
