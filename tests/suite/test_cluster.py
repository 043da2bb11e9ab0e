"""The whole suite on a real local Redis Cluster of three masters.

The three services run as processes with ``REDIS_URL=redis+cluster://...``, so each of
them talks the cluster protocol, and the workload of tests/suite/workload.py runs through
them. The nodes are switched to AOF with fsync on every write first, because consent
accepts writes only on a store that keeps them through a crash.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from redis.crc import key_slot

from shared.redis_client import create_redis
from suite.launcher import Suite, start_suite
from tests.cluster import LocalRedisCluster, redis_cluster  # noqa: F401
from tests.suite.workload import WorkloadResult, run_workload

CUSTOMERS = 40
# The first calls of a cluster client open a connection to each master. On a busy test
# machine that can take longer than the default 50 ms feature deadline, and a missed
# deadline would show as a silence, not as the cluster failure this test looks for.
GENEROUS_DEADLINES = {
    "TRUSTFIRST_DECISION_FEATURES_DEADLINE_MS": "2000",
    "TRUSTFIRST_DECISION_CONSENT_DEADLINE_MS": "2000",
    "TRUSTFIRST_DECISION_IDENTITY_DEADLINE_MS": "2000",
}


@dataclass
class ClusterRun:
    suite_redis_url: str
    workload: WorkloadResult
    keys_per_node: dict[int, int]


def _make_durable(cluster: LocalRedisCluster) -> None:
    for port in cluster.ports:
        with redis.Redis(port=port) as node:
            node.config_set("appendonly", "yes")
            node.config_set("appendfsync", "always")


def _count_keys(cluster: LocalRedisCluster) -> dict[int, int]:
    """Return how many tf: keys each master holds."""
    counts = {}
    for port in cluster.ports:
        with redis.Redis(port=port) as node:
            counts[port] = sum(1 for _ in node.scan_iter("tf:*", count=1000))
    return counts


@pytest.fixture(scope="module")
def cluster_run(
    redis_cluster: LocalRedisCluster,  # noqa: F811
    suite_model: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[ClusterRun]:
    """Start the suite on the cluster, run the workload, and count keys per master."""
    _make_durable(redis_cluster)
    url = redis_cluster.url.replace("redis://", "redis+cluster://", 1)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in GENEROUS_DEADLINES.items():
            patch.setenv(name, value)
        suite: Suite = start_suite(tmp_path_factory.mktemp("cluster"), suite_model, url)
    try:
        targets = {name: suite.target(name) for name in suite.services}
        workload = asyncio.run(run_workload(targets, url, CUSTOMERS))
        yield ClusterRun(
            suite_redis_url=suite.redis_url,
            workload=workload,
            keys_per_node=_count_keys(redis_cluster),
        )
    finally:
        suite.stop()


def test_cluster_suite_uses_cluster_url(cluster_run: ClusterRun) -> None:
    assert cluster_run.suite_redis_url.startswith("redis+cluster://127.0.0.1:")


def test_cluster_resolves_every_customer(cluster_run: ClusterRun) -> None:
    assert len(cluster_run.workload.profiles) == CUSTOMERS
    assert "" not in cluster_run.workload.profiles.values()


def test_cluster_decides_every_customer(cluster_run: ClusterRun) -> None:
    assert dict(cluster_run.workload.errors) == {}
    assert cluster_run.workload.outcomes == CUSTOMERS


def test_cluster_decide_finds_resolved_profile(cluster_run: ClusterRun) -> None:
    assert cluster_run.workload.decided_profiles == cluster_run.workload.profiles


def test_cluster_answers_need_consent(cluster_run: ClusterRun) -> None:
    answers = cluster_run.workload.answers

    assert "SILENCE_REASON_CONSENT_UNAVAILABLE" not in answers
    assert "SILENCE_REASON_FEATURES_UNAVAILABLE" not in answers
    assert "SILENCE_REASON_IDENTITY_UNAVAILABLE" not in answers


def test_cluster_keys_on_every_master(cluster_run: ClusterRun) -> None:
    empty = [port for port, count in cluster_run.keys_per_node.items() if count == 0]

    assert empty == []


async def test_cluster_client_from_url(
    redis_cluster: LocalRedisCluster,  # noqa: F811
) -> None:
    from redis.asyncio.cluster import RedisCluster

    url = redis_cluster.url.replace("redis://", "redis+cluster://", 1)
    client = create_redis(url, timeout_seconds=2.0)
    try:
        # Two keys in different slots, so they live on different masters.
        await client.set("tf:test:{a}", "1")
        await client.set("tf:test:{b}", "2")
        values = [await client.get("tf:test:{a}"), await client.get("tf:test:{b}")]
    finally:
        await client.aclose()

    assert isinstance(client, RedisCluster)
    assert key_slot(b"a") != key_slot(b"b")
    assert values == ["1", "2"]
