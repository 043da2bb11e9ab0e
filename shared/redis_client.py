"""Creation of the asyncio Redis client every service uses.

A URL with the scheme ``redis+cluster://`` (or ``rediss+cluster://`` for TLS) names a Redis
Cluster: ``redis+cluster://[user:password@]host:port[,host:port...]``. Any one reachable
node is enough, because the client discovers the others; listing several lets it start
while one of them is down. Every other URL names one server (``redis://``, ``rediss://``,
``unix://``).
"""

from typing import cast
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

CLUSTER_SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}

# Maximum connections in one client's pool, per server or per cluster node.
MAX_CONNECTIONS = 256


def is_cluster_url(url: str) -> bool:
    """Return True when url uses a cluster scheme such as ``redis+cluster://``."""
    return urlsplit(url).scheme in CLUSTER_SCHEMES


def _retry() -> Retry:
    return Retry(ExponentialBackoff(cap=0.05, base=0.005), retries=2)


def create_redis(
    url: str, timeout_seconds: float, cluster: bool = False
) -> "aioredis.Redis":
    """Return a pooled client for url that decodes replies to str.

    The client is a RedisCluster when url has a cluster scheme or cluster is True (then a
    plain ``redis://`` URL names one node of the cluster). A call that loses its
    connection is retried twice with a short backoff, so one dropped connection (a Redis
    restart, a failover) does not fail a call. A call that times out is not retried,
    because the caller's deadline is usually shorter than a second try.
    """
    if cluster or is_cluster_url(url):
        # NOTE: RedisCluster has the command methods of Redis but is not a subclass. It
        # is returned under the Redis type so that callers need no second code path.
        # A caller that uses MULTI/EXEC or keys of several slots must check
        # isinstance(client, RedisCluster), because a cluster rejects those.
        return cast("aioredis.Redis", create_redis_cluster(url, timeout_seconds))
    # A blocking pool makes a burst above MAX_CONNECTIONS wait up to timeout_seconds for a
    # free connection, instead of failing at once with MaxConnectionsError.
    pool = aioredis.BlockingConnectionPool.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
        retry=_retry(),
        retry_on_error=[RedisConnectionError],
        max_connections=MAX_CONNECTIONS,
        timeout=timeout_seconds,
    )
    return aioredis.Redis.from_pool(pool)


def create_redis_cluster(url: str, timeout_seconds: float) -> RedisCluster:
    """Return a Redis Cluster client for url (a cluster or a plain scheme, see above).

    Raises ValueError when url names no host.
    """
    parts = urlsplit(url)
    scheme = CLUSTER_SCHEMES.get(parts.scheme, parts.scheme)
    credentials, _, hosts = parts.netloc.rpartition("@")
    nodes = [host for host in hosts.split(",") if host]
    if not nodes:
        raise ValueError(
            f"invalid Redis Cluster URL: no host after {parts.scheme}://; "
            "expected redis+cluster://host:port[,host:port...]"
        )

    prefix = f"{credentials}@" if credentials else ""
    first = f"{scheme}://{prefix}{nodes[0]}{parts.path}"
    if parts.query:
        first += f"?{parts.query}"
    return RedisCluster.from_url(
        first,
        startup_nodes=[_node(text) for text in nodes[1:]],
        decode_responses=True,
        socket_timeout=timeout_seconds,
        socket_connect_timeout=timeout_seconds,
        health_check_interval=30,
        retry=_retry(),
        retry_on_error=[RedisConnectionError],
        max_connections=MAX_CONNECTIONS,
    )


def _node(text: str) -> ClusterNode:
    """Parse one ``host:port`` of a cluster URL (port 6379 when omitted)."""
    host, separator, port = text.rpartition(":")
    if not separator:
        return ClusterNode(text, 6379)
    return ClusterNode(host.strip("[]"), int(port))


__all__ = [
    "RedisConnectionError",
    "RedisTimeoutError",
    "create_redis",
    "create_redis_cluster",
    "is_cluster_url",
]
