"""Fixtures shared by all tests: a private real Redis server and in-process gRPC servers.

Tests never touch the machine's shared Redis: each session starts its own redis-server on
a free loopback port and removes it afterwards.
"""

from collections.abc import AsyncIterator, Iterator

import pytest
import redis.asyncio as aioredis

from shared.embedded_redis import EmbeddedRedis


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    """A redis-server for the whole test session (AOF with fsync once a second)."""
    server = EmbeddedRedis(appendfsync="everysec").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def durable_redis() -> Iterator[EmbeddedRedis]:
    """A redis-server with fsync on every write, as consent requires for its writes."""
    server = EmbeddedRedis(appendfsync="always").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EmbeddedRedis) -> str:
    return redis_server.url


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A client on the test Redis; the database is flushed before each test."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    await client.flushdb()
    yield client
    await client.aclose()
