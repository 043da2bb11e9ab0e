"""Creation of the asyncio Redis client every service uses."""

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError


def create_redis(url: str, timeout_seconds: float) -> "aioredis.Redis":
    """Return a pooled client for url that decodes replies to str.

    A call that loses its connection is retried twice with a short backoff, so one
    dropped connection (a Redis restart) does not fail a call; a call that times out is
    not retried, because the caller's deadline is usually shorter than a second try.
    """
    return aioredis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
        retry=Retry(ExponentialBackoff(cap=0.05, base=0.005), retries=2),
        retry_on_error=[RedisConnectionError],
        max_connections=256,
    )


__all__ = ["RedisConnectionError", "RedisTimeoutError", "create_redis"]
