"""Client channels between services, with the retry policy in the service config."""

import json
from typing import Any

import grpc

from shared.telemetry import client_interceptors

# Read-only calls are retried on UNAVAILABLE within the caller's deadline; writes are not
# listed here, so a client never repeats them without an idempotency key of its own.
_READ_ONLY_METHODS = [
    {"service": "trustfirst.identity.v1.IdentityService", "method": "Lookup"},
    {"service": "trustfirst.identity.v1.IdentityService", "method": "GetProfile"},
    {"service": "trustfirst.consent.v1.ConsentService", "method": "CheckConsent"},
    {"service": "trustfirst.consent.v1.ConsentService", "method": "ListConsents"},
]

SERVICE_CONFIG = {
    "loadBalancingConfig": [{"round_robin": {}}],
    "methodConfig": [
        {
            "name": _READ_ONLY_METHODS,
            "retryPolicy": {
                "maxAttempts": 3,
                "initialBackoff": "0.005s",
                "maxBackoff": "0.05s",
                "backoffMultiplier": 2,
                "retryableStatusCodes": ["UNAVAILABLE"],
            },
        }
    ],
}


def channel_options(max_message_bytes: int = 1 << 20) -> list[tuple[str, Any]]:
    """Return the options of a channel from one service to another."""
    return [
        ("grpc.service_config", json.dumps(SERVICE_CONFIG)),
        ("grpc.enable_retries", 1),
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.keepalive_time_ms", 30_000),
        ("grpc.keepalive_timeout_ms", 5_000),
    ]


def create_channel(target: str) -> grpc.aio.Channel:
    """Open an insecure asyncio channel to target (``host:port`` or ``dns:///host:port``).

    Calls on it carry the current trace context, so the called service's spans join the
    caller's trace.
    """
    return grpc.aio.insecure_channel(
        target, options=channel_options(), interceptors=client_interceptors()
    )
