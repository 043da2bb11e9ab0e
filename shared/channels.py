"""Client channels between services, with the retry policy in the service config."""

import json
from typing import Any

import grpc

# Read-only calls are retried on UNAVAILABLE within the caller's deadline. Writes are not
# listed, so a client never repeats them without an idempotency key of its own.
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
        # After a dependency restarts, a channel reconnects within 5 s rather than after
        # gRPC's default backoff of up to 120 s. Calls until then fail fast.
        ("grpc.initial_reconnect_backoff_ms", 500),
        ("grpc.max_reconnect_backoff_ms", 5_000),
    ]


def create_channel(
    target: str, credentials: grpc.ChannelCredentials | None = None
) -> grpc.aio.Channel:
    """Open an asyncio channel to target (``host:port`` or ``dns:///host:port``).

    With credentials (``shared.tls.channel_credentials``) the channel uses mutual TLS,
    otherwise plaintext. A service makes its calls on it with ``shared.calls.unary_call``,
    which adds the deadline, request id and trace context of the call being served.
    """
    if credentials is None:
        return grpc.aio.insecure_channel(target, options=channel_options())
    return grpc.aio.secure_channel(target, credentials, options=channel_options())
